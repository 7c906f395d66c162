//! Errors of a device exchange, worded for the operator at the line: which port, which step, what
//! happened, and what to do. A failed step never implies anything was written: only `READBACK` does.

use std::fmt;
use std::time::Duration;

use super::protocol::ErrorCode;

/// The step of the exchange an error happened in, named as an operator reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `HELLO`.
    Hello,
    /// `PING`.
    Ping,
    /// `KEYGEN`.
    Keygen,
    /// `CSR`.
    Csr,
    /// `SESSION`.
    Session,
    /// `PUT item=chain`.
    PutChain,
    /// `PUT item=private-key`.
    PutPrivateKey,
    /// `PUT item=symmetric-key`.
    PutSymmetricKey,
    /// `CONFIG`.
    Config,
    /// `READBACK`.
    Readback,
    /// `TPM-EK`.
    TpmEk,
    /// `LOCK`.
    Lock,
    /// `SE-INFO`: the secure element's serial and public key.
    SecureElement,
    /// `RESET`.
    Reset,
    /// A raw command from `device console`.
    Console,
    /// A command of another family's wire (an nRF91's `AT%CMNG`), named as sent, without its
    /// arguments.
    Command(&'static str),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Hello => "HELLO (identification)",
            Step::Ping => "PING",
            Step::Keygen => "key generation (KEYGEN)",
            Step::Csr => "the certificate request (CSR)",
            Step::Session => "opening the encrypted session (SESSION)",
            Step::PutChain => "PUT of the certificate chain",
            Step::PutPrivateKey => "PUT of the private key",
            Step::PutSymmetricKey => "PUT of the symmetric key",
            Step::Config => "CONFIG of the registration data",
            Step::Readback => "READBACK",
            Step::TpmEk => "reading the TPM endorsement key (TPM-EK)",
            Step::Lock => "LOCK",
            Step::SecureElement => "reading the secure element (SE-INFO)",
            Step::Reset => "the factory reset (RESET)",
            Step::Console => "the console command",
            Step::Command(name) => return write!(f, "the command {name}"),
        })
    }
}

/// Everything that can go wrong talking to one device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The port could not be opened.
    #[error(
        "cannot open serial port {port}: {source}; check that the device is plugged in and that no other program holds the port"
    )]
    Open {
        /// The port path.
        port: String,
        /// Why.
        source: serialport::Error,
    },
    /// No valid answer within the timeout, after every retry.
    #[error(
        "the device on {port} stopped answering during {step} (no reply after {attempts} attempts, {waited:.1?} in all); check the cable and restart the device"
    )]
    NoAnswer {
        /// The port path.
        port: String,
        /// The step.
        step: Step,
        /// How many times the request was sent.
        attempts: u32,
        /// The total time waited.
        waited: Duration,
    },
    /// Replies kept arriving corrupted.
    #[error(
        "the line to the device on {port} is too noisy: every reply during {step} arrived corrupted ({attempts} attempts); check the cable, the baud rate and the ground connection"
    )]
    Garbled {
        /// The port path.
        port: String,
        /// The step.
        step: Step,
        /// How many times the request was sent.
        attempts: u32,
    },
    /// The device announced a reboot (`BOOT`) in the middle of a step.
    #[error(
        "the device on {port} restarted during {step}; nothing from this step counts as written; let it finish booting and run the device again"
    )]
    Restarted {
        /// The port path.
        port: String,
        /// The step.
        step: Step,
    },
    /// The port itself failed (USB unplugged).
    #[error(
        "the device on {port} disappeared during {step} ({source}); check the cable and plug the device in again"
    )]
    Vanished {
        /// The port path.
        port: String,
        /// The step.
        step: Step,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The device answered `ERR`.
    #[error("the device on {port} refused {step}: {} {detail}; {}", code.as_str(), code.advice())]
    Refused {
        /// The port path.
        port: String,
        /// The step.
        step: Step,
        /// The error code.
        code: ErrorCode,
        /// The device's own words, if any.
        detail: String,
    },
    /// A reply that does not follow the protocol.
    #[error(
        "the device on {port} answered {step} with something this station does not understand ({reason}); check that it runs the production firmware"
    )]
    Protocol {
        /// The port path.
        port: String,
        /// The step.
        step: Step,
        /// What was wrong.
        reason: String,
    },
    /// The device lacks a capability the step needs.
    #[error(
        "the device on {port} does not support {capability} (needed for {step}); check the product and firmware of this batch"
    )]
    Unsupported {
        /// The port path.
        port: String,
        /// The step.
        step: Step,
        /// The capability name.
        capability: &'static str,
    },
    /// A secret step without an open session: the station will not send a secret in plaintext.
    #[error(
        "refusing {step} on {port}: no encrypted session is open, and secrets never cross the wire in plaintext"
    )]
    NoSession {
        /// The port path.
        port: String,
        /// The step.
        step: Step,
    },
    /// The device reported a digest other than the one of what was sent.
    #[error(
        "the device on {port} stored something other than what was sent during {step} (digest {reported}, expected {expected}); run the device again"
    )]
    Mismatch {
        /// The port path.
        port: String,
        /// The step.
        step: Step,
        /// The digest the device reported.
        reported: String,
        /// The digest of what was sent.
        expected: String,
    },
    /// A modem answered `ERROR` or `+CME ERROR: n`: never retried blindly, mapped to what happened
    /// and what to do.
    #[error("the modem on {port} refused {step}: {meaning}")]
    Modem {
        /// The port path.
        port: String,
        /// The step.
        step: Step,
        /// The `+CME ERROR` code, `None` for a bare `ERROR`.
        code: Option<u32>,
        /// What the code means and what to do.
        meaning: String,
    },
    /// An SMP server answered an error (v1 `rc`, or v2 `err {group, rc}`).
    #[error("the device on {port} refused {step}: {meaning}")]
    Smp {
        /// The port path.
        port: String,
        /// The step.
        step: Step,
        /// The SMP group of the error (v2), else the request's.
        group: u16,
        /// The return code.
        rc: i64,
        /// What it means and what to do.
        meaning: String,
    },
    /// A credential slot already holds something, and re-provisioning was not chosen.
    #[error(
        "the device on {port} already holds {what}; the station never overwrites a credential unless re-provisioning was chosen: run the batch with --reprovision \"<reason>\" to replace it, or take the device off the line"
    )]
    Occupied {
        /// The port path.
        port: String,
        /// What it holds (`a client certificate in sec_tag 42`).
        what: String,
    },
    /// The station's own input cannot be sent (a registration ID with a space, a chain too large).
    #[error("cannot send {step} to {port}: {reason}")]
    Input {
        /// The port path.
        port: String,
        /// The step.
        step: Step,
        /// What is wrong with the input.
        reason: String,
    },
}
