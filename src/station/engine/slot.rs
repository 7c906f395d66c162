//! One slot of a running batch: a worker thread that takes each device its source delivers, waits
//! for its label when the batch names devices by label, runs the pipeline on it and records how
//! it left the slot; all slots share one [`Shared`] (commands, counts, outcomes).

use super::*;

/// What the slots of one run share: the operator's commands, the count of devices claimed and
/// through, the batch's target, every outcome, and the label desk.
pub(super) struct Shared {
    pub(super) paused: AtomicBool,
    pub(super) stop: AtomicBool,
    pub(super) claimed: AtomicU64,
    pub(super) passed: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) target: Option<u64>,
    pub(super) outcomes: Mutex<Vec<DeviceOutcome>>,
    pub(super) labels: LabelDesk,
}

/// Waits until the operator scans the label of the device in `slot`; `None` if the batch stops
/// first. Paused, it still takes the scan: the device is already seated.
pub(super) fn wait_for_label(
    slot: &str,
    hardware_id: &str,
    shared: &Shared,
    emit: &dyn Fn(Event),
) -> Option<String> {
    shared.labels.wait(slot);
    emit(Event::LabelWanted {
        slot: slot.into(),
        hardware_id: hardware_id.into(),
    });
    tracing::info!(
        slot,
        hardware_id,
        "waiting for the device's label to be scanned"
    );
    loop {
        if let Some(serial) = shared.labels.take(slot) {
            return Some(serial);
        }
        if shared.stop.load(Ordering::SeqCst) {
            shared.labels.cancel(slot);
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(super) fn slot_worker(
    slot: &str,
    mut source: Box<dyn DeviceSource>,
    ctx: &BatchContext,
    shared: &Shared,
    events: &Sender<Event>,
) {
    let emit = |e: Event| {
        let _ = events.send(e);
    };
    {
        let (events, slot) = (events.clone(), slot.to_string());
        source.set_notifier(Box::new(move |notice| match notice {
            SourceNotice::PortAbsent { path, waited } => {
                let _ = events.send(Event::PortAbsent {
                    slot: slot.clone(),
                    path,
                    waited,
                });
            }
        }));
    }
    let mut said_full = false;
    loop {
        if shared.target.is_some_and(|t| done(shared) >= t) {
            emit(Event::SlotStopped {
                slot: slot.into(),
                reason: "the batch is complete".into(),
            });
            return;
        }
        // Every place is taken by a device in another slot. A place can come back (a device
        // found done by an earlier run gives its place back), so wait rather than stop: a slot
        // that stopped here would leave a resumed batch short of its size.
        if shared
            .target
            .is_some_and(|t| shared.claimed.load(Ordering::SeqCst) >= t)
            && !shared.stop.load(Ordering::SeqCst)
        {
            if !said_full {
                said_full = true;
                emit(Event::SlotWaiting { slot: slot.into() });
                tracing::info!(slot, "{}", full_reason(shared));
            }
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        said_full = false;
        while shared.paused.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if shared.stop.load(Ordering::SeqCst) {
            let complete = shared.target.is_some_and(|t| done(shared) >= t);
            emit(Event::SlotStopped {
                slot: slot.into(),
                reason: if complete {
                    "the batch is complete".into()
                } else {
                    "the batch was stopped".into()
                },
            });
            return;
        }
        emit(Event::SlotWaiting { slot: slot.into() });
        let Some(mut arrival) = source.next_device(&shared.stop) else {
            emit(Event::SlotStopped {
                slot: slot.into(),
                reason: "no more devices in this slot".into(),
            });
            return;
        };
        // Claim a place in the batch only once a device is really there.
        let claimed = shared.claimed.fetch_add(1, Ordering::SeqCst);
        if shared.target.is_some_and(|t| claimed >= t) {
            // No place left right now: give the claim back and leave the device where it is
            // (handed back without a serial, so the slot takes it again once a place frees).
            shared.claimed.fetch_sub(1, Ordering::SeqCst);
            source.finished(Some(arrival.driver), None, false);
            continue;
        }
        // A joined station provisions a device only with a lease unit for it. The unit is taken
        // once the device is there: reserved by an empty slot it would sit idle while devices in
        // other slots wait (a fixture of 100 slots would strand 100 units).
        let permit = match &ctx.leases {
            Some(gate) => match wait_for_unit(gate, slot, &shared.stop, &emit) {
                Some(permit) => Some(permit),
                None => {
                    // Stopped while waiting: the device stays where it is, its place goes back.
                    shared.claimed.fetch_sub(1, Ordering::SeqCst);
                    source.finished(Some(arrival.driver), None, false);
                    continue;
                }
            },
            None => None,
        };
        if ctx.batch.serial_from == SerialFrom::Label || arrival.info.serial.trim().is_empty() {
            let Some(label) = wait_for_label(slot, &arrival.info.hardware_id, shared, &emit) else {
                // Stopped while waiting: the device stays where it is, its place goes back.
                shared.claimed.fetch_sub(1, Ordering::SeqCst);
                source.finished(Some(arrival.driver), None, false);
                continue;
            };
            // What the device said of itself stays on record as its hardware id.
            let reported = std::mem::replace(&mut arrival.info.serial, label);
            if arrival.info.hardware_id.trim().is_empty() {
                arrival.info.hardware_id = reported;
            }
        }
        emit(Event::DeviceSeen {
            slot: slot.into(),
            serial: arrival.info.serial.clone(),
            model: arrival.info.model.clone(),
        });
        let outcome = provision(ctx, slot, arrival.driver.as_mut(), &arrival.info, &emit);
        drop(permit);
        shared.labels.release(slot);
        source.finished(
            Some(arrival.driver),
            outcome.serial.as_deref(),
            outcome.failure.is_none(),
        );
        if outcome.failure.is_none() && outcome.done == Done::AlreadyDone {
            // Done in an earlier run and still in the slot: give its place in the batch back.
            shared.claimed.fetch_sub(1, Ordering::SeqCst);
            emit(Event::SlotWaiting { slot: slot.into() });
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        match &outcome.failure {
            None => {
                shared.passed.fetch_add(1, Ordering::SeqCst);
                emit(Event::Passed {
                    slot: slot.into(),
                    serial: arrival.info.serial.clone(),
                    registration_id: outcome.registration_id.clone().unwrap_or_default(),
                    elapsed: outcome.elapsed,
                });
            }
            Some((stage, reason)) => {
                shared.failed.fetch_add(1, Ordering::SeqCst);
                emit(Event::Failed {
                    slot: slot.into(),
                    serial: outcome.serial.clone(),
                    stage: *stage,
                    reason: reason.clone(),
                });
            }
        }
        // The batch is full: slots still waiting for a device (a real port blocks) stop now.
        if shared.target.is_some_and(|t| {
            shared.passed.load(Ordering::SeqCst) + shared.failed.load(Ordering::SeqCst) >= t
        }) {
            shared.stop.store(true, Ordering::SeqCst);
        }
        let record_stage = outcome.failure.as_ref().map(|(s, _)| *s);
        record_device_run(ctx, &outcome);
        if let Ok(mut o) = shared.outcomes.lock() {
            o.push(outcome);
        }
        emit(Event::Progress {
            passed: shared.passed.load(Ordering::SeqCst),
            failed: shared.failed.load(Ordering::SeqCst),
            target: shared.target,
        });
        // A ledger that refuses writes stops the line: nothing may be written to a device that
        // the ledger cannot record.
        // A key store that cannot sign or derive (HSM unplugged, session lost for good) fails
        // every device the same way: stop and say so rather than burn through the batch.
        let stop_reason = match record_stage {
            Some(Stage::Record) => Some(
                "the ledger refused a write; the batch is stopped (check the disk and the ledger file, then run the batch again)",
            ),
            Some(Stage::Issue) => Some(
                "the key store could not issue; the batch is stopped (check the HSM and its cable, then run the batch again: devices done stay done)",
            ),
            _ => None,
        };
        if let Some(reason) = stop_reason {
            shared.stop.store(true, Ordering::SeqCst);
            emit(Event::SlotStopped {
                slot: slot.into(),
                reason: reason.into(),
            });
            return;
        }
    }
}

/// Devices of this run that are through (passed or failed).
pub(super) fn done(shared: &Shared) -> u64 {
    shared.passed.load(Ordering::SeqCst) + shared.failed.load(Ordering::SeqCst)
}

/// Why a slot waits although a device may be in it: every place of the batch is taken; the
/// batch is complete only when the devices of the other slots are done too.
pub(super) fn full_reason(shared: &Shared) -> String {
    let done = done(shared);
    match shared.target {
        Some(t) if done < t => format!(
            "every place of the batch is taken: the other slots finish its last {} device(s)",
            t - done
        ),
        _ => "the batch is complete".into(),
    }
}

/// Records how a device left its slot, for reports per batch and per day. Report data only: a
/// ledger that refuses it is logged, and the Record stage of the next device stops the line if
/// the ledger is really gone.
pub(super) fn record_device_run(ctx: &BatchContext, outcome: &DeviceOutcome) {
    let run = crate::ledger::NewDeviceRun {
        batch: ctx.batch_id,
        slot: outcome.slot.clone(),
        serial_number: outcome.serial.clone(),
        registration_id: outcome.registration_id.clone(),
        failure: outcome
            .failure
            .as_ref()
            .map(|(stage, reason)| (stage.as_str().to_string(), reason.clone())),
        elapsed_ms: u64::try_from(outcome.elapsed.as_millis()).unwrap_or(u64::MAX),
    };
    if let Err(e) = ctx
        .ledger
        .call(move |l| l.transaction(|w| w.record_device_run(&run)))
    {
        tracing::warn!(slot = %outcome.slot, "the ledger did not record this device run for reports: {e}");
    }
}
