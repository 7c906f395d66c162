//! The desk's command line without a display: one line that says what to use instead, a
//! non-zero exit, no panic.

use std::process::Command;

#[test]
fn without_a_display_the_desk_points_to_headless_run() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["gui"][..], &[][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_dps-station"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("run --headless"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
