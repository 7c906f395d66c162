//! Device registration states: what DPS recorded when a device registered (assigned hub, device
//! id, status). The station reads them to show that a device it made did provision.

use reqwest::Method;

use super::client::{DpsClient, Op};
use super::enrollments::{IfMatch, request};
use super::error::{DpsError, registration_target};
use super::model::DeviceRegistrationState;
use super::sas::percent_encode;

fn path(registration_id: &str) -> String {
    format!("/registrations/{}", percent_encode(registration_id))
}

impl DpsClient {
    /// The registration state of a device (404 until the device has registered).
    pub fn get_registration_state(
        &self,
        registration_id: &str,
    ) -> Result<DeviceRegistrationState, DpsError> {
        let target = registration_target(registration_id);
        let op = Op {
            operation: "read",
            target: &target,
        };
        self.execute_json(
            &op,
            &request(Method::GET, path(registration_id), None, None),
        )
    }

    /// Deletes a registration state, so the device registers afresh (with an etag, only that
    /// version).
    pub fn delete_registration_state(
        &self,
        registration_id: &str,
        if_match: Option<&IfMatch>,
    ) -> Result<(), DpsError> {
        let target = registration_target(registration_id);
        let op = Op {
            operation: "delete",
            target: &target,
        };
        let req = request(
            Method::DELETE,
            path(registration_id),
            if_match.map(IfMatch::header),
            None,
        );
        let check = || match self.get_registration_state(registration_id) {
            Ok(_) => Ok(false),
            Err(e) if e.is_not_found() => Ok(true),
            Err(e) => Err(e),
        };
        self.execute(&op, &req, Some(&check)).map(|_| ())
    }
}
