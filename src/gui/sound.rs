//! The pass and fail sounds (`assets/sounds/*.wav`, made by `scripts/make-sounds.py` from sine
//! tones: ours, no licence needed). Played by the system's `aplay` (ALSA utils) in the
//! background so the desk needs no audio library; with no player or no sound device the desk is
//! silent and says so once in the log, never to the operator.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// The sounds of the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sound {
    /// A device passed: two short rising tones.
    Pass,
    /// A device failed: a low, longer double buzz.
    Fail,
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Where the sound files are: beside the installed binary's share folder, else the source tree.
fn file(sound: Sound) -> Option<PathBuf> {
    let name = match sound {
        Sound::Pass => "pass.wav",
        Sound::Fail => "fail.wav",
    };
    [
        PathBuf::from("/usr/share/dps-station/sounds"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/sounds"),
    ]
    .into_iter()
    .map(|d| d.join(name))
    .find(|p| p.is_file())
}

/// Plays `sound` without waiting; any failure is silent for the operator.
pub fn play(sound: Sound) {
    let Some(path) = file(sound) else {
        warn_once("the sound files are missing");
        return;
    };
    let child = Command::new("aplay")
        .arg("-q")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        // Reaped on a small thread so no zombie is left; it ends within a second.
        Ok(mut c) => {
            let _ = std::thread::Builder::new()
                .name("sound".into())
                .spawn(move || {
                    if !c.wait().is_ok_and(|s| s.success()) {
                        warn_once("aplay could not play (no sound device?)");
                    }
                });
        }
        Err(e) => warn_once(&format!(
            "cannot run aplay ({e}); install alsa-utils for sounds"
        )),
    }
}

fn warn_once(what: &str) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::info!("pass/fail sounds are silent: {what}");
    }
}
