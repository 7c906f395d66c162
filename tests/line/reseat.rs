//! A slot whose adapter stays open between devices: a device re-seated after it failed (our
//! messages tell the operator to plug it in again) is taken again, while a device that simply
//! stays in the slot is not.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use dps_station::device::ClientOptions;
use dps_station::device::simulator::{SimAdapter, SimOptions};
use dps_station::station::source::{Arrival, DeviceSource, PortSource};

/// `next_device`, given up after `limit` (the source blocks while the slot has no new device).
fn next_within(source: &mut PortSource, limit: Duration) -> Option<Arrival> {
    let stop = Arc::new(AtomicBool::new(false));
    let (done, finished) = mpsc::channel::<()>();
    let timer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Until the limit, or at once when the source answered.
            let _ = finished.recv_timeout(limit);
            stop.store(true, Ordering::Relaxed);
        })
    };
    let arrival = source.next_device(&stop);
    drop(done);
    timer.join().unwrap();
    arrival
}

#[test]
fn a_failed_device_re_seated_on_a_kept_open_adapter_is_taken_again() {
    // The flash lives in a file, so the device plugged in again is the same device (same serial).
    let flash = tempfile::tempdir().unwrap();
    let options = SimOptions {
        flash_dir: Some(flash.path().to_path_buf()),
        ..SimOptions::default()
    };
    let adapter = SimAdapter::start("R1").unwrap();
    let mut source = PortSource::new(adapter.path().into(), ClientOptions::default());
    let device = adapter.plug(7, &options).unwrap();
    let first = next_within(&mut source, Duration::from_secs(10)).expect("first device taken");
    let serial = first.info.serial.clone();
    assert_eq!(serial, device.flash().serial);
    // The station failed it; it stays in the slot: not taken again.
    source.finished(Some(first.driver), Some(&serial), false);
    assert!(
        next_within(&mut source, Duration::from_millis(1200)).is_none(),
        "a device left in the slot was taken again"
    );

    // The operator re-seats it: it boots again and is served.
    adapter.unplug();
    std::thread::sleep(Duration::from_millis(100));
    let _again = adapter.plug(7, &options).unwrap();
    let second = next_within(&mut source, Duration::from_secs(10))
        .expect("the re-seated device was not taken again");
    assert_eq!(second.info.serial, serial);

    // A device that passed and stays in the slot is still not taken twice.
    source.finished(Some(second.driver), Some(&serial), true);
    assert!(
        next_within(&mut source, Duration::from_millis(1200)).is_none(),
        "a passed device left in the slot was taken again"
    );
}
