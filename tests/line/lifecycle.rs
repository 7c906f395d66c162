//! The batch lifecycle: open → running → paused → running → closed, driven by commands.

use std::time::{Duration, Instant};

use dps_station::device::ClientOptions;
use dps_station::device::simulator::{SimFaults, SimOptions};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::engine::Engine;
use dps_station::station::events::{BatchState, Command, Event};
use dps_station::station::source::{DeviceSource, VirtualFixture};

#[test]
fn a_paused_batch_takes_no_new_device_until_resumed() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let sim = SimOptions {
        faults: SimFaults {
            baud: Some(38_400),
            ..SimFaults::default()
        },
        ..SimOptions::default()
    };
    let fixture = VirtualFixture::new(3, sim, ClientOptions::default());
    let sources: Vec<(String, Box<dyn DeviceSource>)> =
        vec![("S1".into(), Box::new(fixture.slot("S1")))];
    let text = ws.batch_toml(
        Mode::SymmetricIndividual,
        "pause",
        &RunOptions {
            devices: 3,
            ..RunOptions::default()
        },
    );
    let engine = Engine::start(ws.engine_setup("pause", &text, sources).unwrap()).unwrap();
    let commands = engine.commands();
    let mut states = Vec::new();
    let mut seen = 0;
    let mut paused_at = None;
    let started = Instant::now();
    while let Ok(event) = engine.events.recv_timeout(Duration::from_secs(20)) {
        match &event {
            Event::Batch(s) => states.push(*s),
            Event::DeviceSeen { .. } => {
                seen += 1;
                if seen == 1 {
                    commands.send(Command::Pause).unwrap();
                    paused_at = Some(Instant::now());
                }
            }
            Event::Passed { .. }
                if paused_at.is_some_and(|p| p.elapsed() < Duration::from_secs(5)) =>
            {
                // The in-flight device finishes; nothing new is taken for a while.
                std::thread::sleep(Duration::from_millis(600));
                for queued in engine.events.try_iter() {
                    assert!(
                        !matches!(queued, Event::DeviceSeen { .. }),
                        "a device was taken while paused"
                    );
                    if let Event::Batch(s) = queued {
                        states.push(s);
                    }
                }
                paused_at = None;
                commands.send(Command::Resume).unwrap();
            }
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    drop(commands);
    let summary = engine.join().unwrap();
    assert_eq!(summary.passed(), 3);
    assert_eq!(states.first(), Some(&BatchState::Open));
    assert!(states.contains(&BatchState::Paused));
    assert_eq!(states.last(), Some(&BatchState::Closed));
}
