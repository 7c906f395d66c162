//! Helpers: a simulator fleet and a client with short timeouts, and a CA to issue chains.

use std::time::Duration;

use dps_station::device::client::{ClientOptions, LineClient, Timeouts};
use dps_station::device::simulator::{Fleet, SimOptions};

pub type Client = LineClient<Box<dyn serialport::SerialPort>>;

/// Timeouts short enough to keep the suite fast, long enough for a loaded 2-core machine.
pub fn fast_options() -> ClientOptions {
    ClientOptions {
        baud: 115_200,
        timeouts: Timeouts {
            reply: Duration::from_millis(400),
            busy_idle: Duration::from_millis(1000),
            busy_total: Duration::from_secs(10),
            session: Duration::from_millis(1000),
        },
        attempts: 3,
        ..ClientOptions::default()
    }
}

/// One simulated device and a client connected to it.
pub fn device(options: &SimOptions) -> (Fleet, Client) {
    let fleet = Fleet::start(1, options).unwrap();
    let client = LineClient::open(&fleet.paths()[0], fast_options()).unwrap();
    (fleet, client)
}

/// A chain for a device CSR: leaf signed by a throwaway CA, PEM, leaf first.
pub fn issue_chain(csr_der: Vec<u8>) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test intermediate");
    let ca = rcgen::CertifiedIssuer::self_signed(params, ca_key).unwrap();
    let csr = rcgen::CertificateSigningRequestParams::from_der(&csr_der.into()).unwrap();
    let leaf = csr.signed_by(&ca).unwrap();
    format!("{}{}", leaf.pem(), ca.pem())
}
