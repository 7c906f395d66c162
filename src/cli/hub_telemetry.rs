//! `dps-station hub-telemetry`: what devices sent to the emulator's local IoT hub (and its
//! identities with their twins), read from the emulator's API with the DPS connection string.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use dps_station::dps::sas;
use dps_station::dps::transport::{TlsTrust, rustls_config};
use serde_json::Value;

/// Flags of `hub-telemetry`.
#[derive(Debug, Args)]
pub struct HubTelemetryArgs {
    /// The device whose messages to show; without it, the hub's device identities are listed.
    #[arg(long, value_name = "ID")]
    device: Option<String>,
    /// The emulator's CA certificate (what `dps-emulator --ca-out` wrote).
    #[arg(long, value_name = "FILE")]
    ca: PathBuf,
    /// An owner-only (chmod 600) file holding the emulator's connection string [default:
    /// $DPS_CONNECTION_STRING].
    #[arg(long, value_name = "FILE")]
    connection_string_file: Option<PathBuf>,
    /// Print the JSON the emulator answered instead of one line per message.
    #[arg(long)]
    json: bool,
}

/// Reads and prints.
pub fn run(args: HubTelemetryArgs) -> anyhow::Result<ExitCode> {
    let cs = super::dps::connection_string(args.connection_string_file.as_deref())?;
    let ca = std::fs::read(&args.ca)
        .with_context(|| format!("cannot read the CA certificate {}", args.ca.display()))?;
    let tls = rustls_config(&TlsTrust::only(ca))?;
    let http = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTPS client")?;
    let host = cs.host_name();
    let expiry = sas::expiry_from_now(Duration::from_secs(600), 0)?;
    let auth = sas::authorization_header(cs.key_name(), cs.key(), host, expiry)?;
    let path = match &args.device {
        Some(id) => format!("/devices/{}/messages/events", sas::percent_encode(id)),
        None => "/devices".to_owned(),
    };
    let url = format!("https://{host}{path}");
    let resp = http
        .get(&url)
        .header("authorization", auth.expose())
        .send()
        .with_context(|| format!("cannot reach the emulator at {url}"))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .with_context(|| format!("the emulator's answer from {url} is not JSON"))?;
    if !status.is_success() {
        bail!(
            "the emulator answered {status}: {}",
            body.get("message").and_then(Value::as_str).unwrap_or("")
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &args.device {
        Some(id) => {
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            println!("{} message(s) from {id}", messages.len());
            for m in messages {
                let text = m
                    .get("body")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        format!("(base64) {}", m["bodyBase64"].as_str().unwrap_or(""))
                    });
                println!(
                    "{}  {}  properties {}  system {}",
                    m["enqueuedTimeUtc"].as_str().unwrap_or(""),
                    text,
                    m["properties"],
                    m["systemProperties"]
                );
            }
        }
        None => {
            let devices = body.as_array().cloned().unwrap_or_default();
            println!("{} device identit(ies) in the local hub", devices.len());
            for d in devices {
                println!(
                    "{}  ({}, registration {}{})",
                    d["deviceId"].as_str().unwrap_or(""),
                    d["authentication"].as_str().unwrap_or(""),
                    d["registrationId"].as_str().unwrap_or(""),
                    d["enrollmentGroupId"]
                        .as_str()
                        .map(|g| format!(", group {g}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
