//! The one harness helper every desk test goes through: a demo workspace (emulator, SoftHSM2
//! token, ledger) behind a station handle, the desk over it in a kittest harness, and ways to
//! click, type, scan and wait as an operator would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_station::gui::first_run::FirstRunApp;
use dps_station::gui::i18n::Language;
use dps_station::gui::{DeskApp, DeskOptions};
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice};
use dps_station::station::demo_desk::{DemoDeskOptions, demo_station};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};

/// A desk under test and the workspace behind it.
pub struct TestDesk {
    /// The harness; its state is the desk.
    pub harness: Harness<'static, DeskApp>,
    /// Kept alive for the desk's lifetime (its drop removes the workspace).
    pub _workspace: Arc<DemoWorkspace>,
}

/// A desk over a fresh demo workspace, sounds off, in `language` (English if `None`).
pub fn desk(options: DemoDeskOptions, language: Option<Language>) -> TestDesk {
    desk_with(
        options,
        DeskOptions {
            kiosk: false,
            sounds: Some(false),
            language: Some(language.unwrap_or(Language::En)),
        },
    )
}

/// [`desk`] with the desk's own options (kiosk mode).
pub fn desk_with(options: DemoDeskOptions, desk_options: DeskOptions) -> TestDesk {
    desk_on(KeyStoreChoice::SoftHsm, options, desk_options)
}

/// [`desk_with`] over a workspace with the key store `keys` (software keys need no PIN: for a
/// screen whose worker opens the key store unattended).
pub fn desk_on(
    keys: KeyStoreChoice,
    options: DemoDeskOptions,
    desk_options: DeskOptions,
) -> TestDesk {
    let workspace = Arc::new(DemoWorkspace::create(keys).expect("demo workspace"));
    let station = demo_station(workspace.clone(), options).expect("demo station");
    let app = DeskApp::new(station, desk_options);
    let harness = Harness::builder()
        .with_size([1280.0, 800.0])
        // 10 ms frames: a scanner's characters then arrive as fast as a real one types them.
        .with_step_dt(0.01)
        .build_ui_state(
            |ui, app: &mut DeskApp| {
                app.logic(ui.ctx());
                app.draw(ui);
            },
            app,
        );
    let mut d = TestDesk {
        harness,
        _workspace: workspace,
    };
    d.steps(3);
    d
}

impl TestDesk {
    /// The window's close button (or Alt-F4) was pressed; returns whether the desk refused.
    pub fn close_window(&mut self) -> bool {
        self.harness
            .input_mut()
            .viewports
            .entry(egui::ViewportId::ROOT)
            .or_default()
            .events
            .push(egui::ViewportEvent::Close);
        self.harness.step();
        let refused = self
            .harness
            .output()
            .viewport_output
            .get(&egui::ViewportId::ROOT)
            .is_some_and(|v| v.commands.contains(&egui::ViewportCommand::CancelClose));
        self.steps(2);
        refused
    }

    /// Runs `n` frames.
    pub fn steps(&mut self, n: usize) {
        for _ in 0..n {
            self.harness.step();
        }
    }

    /// Clicks the widget labelled `label` and lets the desk act on it.
    pub fn click(&mut self, label: &str) {
        if self.harness.query_by_label(label).is_none() {
            let labels: Vec<String> = self
                .harness
                .query_all(egui_kittest::kittest::By::new())
                .filter_map(|n| n.accesskit_node().label())
                .collect();
            panic!(
                "no widget labelled {label:?}; the desk shows {labels:?}; notice {:?}",
                self.harness.state().notice()
            );
        }
        // Through the accessibility action, as a screen reader or touch screen would press it
        // (a synthetic pointer click misses widgets inside an egui Modal in kittest 0.37).
        self.harness.get_by_label(label).click_accesskit();
        self.steps(6);
    }

    /// Whether a widget's label contains `text`.
    pub fn shows(&self, text: &str) -> bool {
        self.count(text) > 0
    }

    /// How many widgets' labels contain `text`.
    pub fn count(&self, text: &str) -> usize {
        self.harness.query_all_by_label_contains(text).count()
    }

    /// Types `name` into the sign-in field and signs in.
    pub fn sign_in(&mut self, name: &str) {
        self.harness
            .get_by_role(egui::accesskit::Role::TextInput)
            .focus();
        self.steps(1);
        self.harness
            .get_by_role(egui::accesskit::Role::TextInput)
            .type_text(name);
        self.steps(2);
        let sign_in = self.harness.state().messages().t("bar.sign_in").to_string();
        self.click(&sign_in);
        assert_eq!(self.harness.state().view().operator.as_deref(), Some(name));
    }

    /// A barcode scanner's burst: the characters and Enter within one frame, wherever focus is.
    pub fn scan(&mut self, code: &str) {
        self.harness.event(egui::Event::Text(code.to_string()));
        self.harness.key_press(egui::Key::Enter);
        self.steps(4);
    }

    /// Opens the picker, chooses `batch` and starts it.
    pub fn start_batch(&mut self, batch: &str) {
        self.click("Start batch (F2)");
        // The picker fades in; let it settle before aiming at it.
        self.steps(10);
        self.click(batch);
        self.click("Start this batch");
        self.wait_until("the batch to start", Duration::from_secs(30), |d| {
            d.view().running
        });
    }

    /// Steps frames until `done` holds, or fails the test after `timeout` naming `what`.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, done: impl Fn(&DeskApp) -> bool) {
        let start = Instant::now();
        while !done(self.harness.state()) {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; notice: {:?}; view: passed {} failed {} state {:?}",
                self.harness.state().notice(),
                self.harness.state().view().passed,
                self.harness.state().view().failed,
                self.harness.state().view().state,
            );
            self.harness.step();
            std::thread::sleep(Duration::from_millis(20));
        }
        self.steps(2);
    }
}

/// The first-run screen (what `dps-station` opens when `path` is missing or unconfigured) in a
/// harness of the desk's size, in `language` (English if `None`), sounds off.
pub fn first_run(
    path: &std::path::Path,
    language: Option<Language>,
) -> Harness<'static, FirstRunApp> {
    let app = FirstRunApp::new(
        path,
        DeskOptions {
            kiosk: false,
            sounds: Some(false),
            language: Some(language.unwrap_or(Language::En)),
        },
    );
    let mut harness = Harness::builder()
        .with_size([1280.0, 800.0])
        .with_step_dt(0.01)
        .build_ui_state(
            |ui, app: &mut FirstRunApp| {
                app.logic(ui.ctx());
                app.draw(ui);
            },
            app,
        );
    harness.run_steps(3);
    harness
}

/// Roles where `name` is the engineer with `password` (for [`DemoDeskOptions::roles`]).
pub fn engineer_roles(
    name: &str,
    password: &str,
) -> dps_station::station::operator::settings::RolesSection {
    dps_station::station::operator::settings::RolesSection {
        engineers: vec![name.into()],
        engineer_password: Some(
            dps_station::station::operator::roles::hash_password(password).expect("hash"),
        ),
        ..Default::default()
    }
}

impl TestDesk {
    /// Signs `name` in and takes the engineer role with `password` (argon2 on a worker).
    pub fn become_engineer(&mut self, name: &str, password: &str) {
        self.sign_in(name);
        take_role(self, "engineer", password);
        self.wait_until("the engineer role", Duration::from_secs(20), |a| {
            a.station().operator().1 == dps_station::station::operator::Role::Engineer
        });
    }

    /// Sets the text field labelled `label` to `text`, as a screen reader would.
    pub fn set_field(&mut self, label: &str, text: &str) {
        let node = self
            .harness
            .query_all_by_label(label)
            .find(|n| n.accesskit_node().role() == egui::accesskit::Role::TextInput)
            .unwrap_or_else(|| panic!("no text field labelled {label:?}"));
        node.set_text_value_accesskit(text);
        self.steps(2);
    }
}

impl TestDesk {
    /// Steps frames until a widget's label contains `text` (a worker's answer), or fails after
    /// `timeout`.
    pub fn wait_shows(&mut self, text: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.shows(text) {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {text:?}; notice: {:?}",
                self.harness.state().notice()
            );
            self.harness.step();
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Takes `role` ("engineer" or "security officer", as the role dialog names it) with
/// `password` and waits for the desk's answer (argon2 runs on a worker).
pub fn take_role(d: &mut TestDesk, role: &str, password: &str) {
    let before = d.harness.state().notice().cloned();
    d.click("Role…");
    d.click(role);
    d.harness
        .get_by_role(egui::accesskit::Role::PasswordInput)
        .focus();
    d.steps(1);
    d.harness
        .get_by_role(egui::accesskit::Role::PasswordInput)
        .type_text(password);
    d.steps(2);
    d.click("Take this role");
    d.wait_until("the role's answer", Duration::from_secs(20), |a| {
        a.notice() != before.as_ref()
    });
}

/// Types `text` into the (empty) text field labelled `label`.
pub fn fill(d: &mut TestDesk, label: &str, text: &str) {
    for step in 0..2 {
        let node = d
            .harness
            .query_all_by_label(label)
            .find(|n| n.accesskit_node().role() == egui::accesskit::Role::TextInput)
            .unwrap_or_else(|| panic!("no text field labelled {label:?}"));
        if step == 0 {
            node.focus();
        } else {
            node.type_text(text);
        }
        d.steps(1);
    }
    d.steps(1);
}

/// A desk where `kim` is signed in and holds the engineer role (password `eng-pass`).
pub fn engineer_desk() -> TestDesk {
    use dps_station::station::operator::roles::hash_password;
    use dps_station::station::operator::settings::RolesSection;
    let roles = RolesSection {
        engineers: vec!["kim".into()],
        engineer_password: Some(hash_password("eng-pass").unwrap()),
        ..RolesSection::default()
    };
    let mut d = desk(
        DemoDeskOptions {
            roles,
            ..DemoDeskOptions::default()
        },
        None,
    );
    d.sign_in("kim");
    take_role(&mut d, "engineer", "eng-pass");
    d.wait_until("the engineer role", Duration::from_secs(30), |a| {
        a.allowed().len() > 1
    });
    d
}

impl TestDesk {
    /// Types `text` into the text field labelled `label` (replacing nothing: the field is empty).
    pub fn type_into(&mut self, label: &str, text: &str) {
        let role = egui::accesskit::Role::TextInput;
        self.harness.get_by_role_and_label(role, label).focus();
        self.steps(1);
        self.harness
            .get_by_role_and_label(role, label)
            .type_text(text);
        self.steps(2);
    }

    /// Steps frames until a widget's label contains `text`, or fails after `timeout`.
    pub fn wait_to_show(&mut self, text: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.shows(text) {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting to show {text:?}; notice: {:?}",
                self.harness.state().notice()
            );
            self.harness.step();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl TestDesk {
    /// Takes the engineer's role with `password` (signed in as a listed engineer) and waits for
    /// the answer (argon2 runs on a worker).
    pub fn unlock_engineer(&mut self, password: &str) {
        take_role(self, "engineer", password);
    }
}

/// [`desk_on`] whose `emulator` DPS target has its connection string in a file, as the `demo`
/// command's desk does, so that the engineer's screens can enroll with the demo's DPS.
pub fn desk_with_dps(keys: KeyStoreChoice, options: DemoDeskOptions) -> TestDesk {
    let mut workspace = DemoWorkspace::create(keys).expect("demo workspace");
    workspace
        .keep_connection_string_in_file()
        .expect("connection string file");
    let workspace = Arc::new(workspace);
    let station = demo_station(workspace.clone(), options).expect("demo station");
    let app = DeskApp::new(
        station,
        DeskOptions {
            kiosk: false,
            sounds: Some(false),
            language: Some(Language::En),
        },
    );
    let harness = Harness::builder()
        .with_size([1280.0, 800.0])
        .with_step_dt(0.01)
        .build_ui_state(
            |ui, app: &mut DeskApp| {
                app.logic(ui.ctx());
                app.draw(ui);
            },
            app,
        );
    let mut d = TestDesk {
        harness,
        _workspace: workspace,
    };
    d.steps(3);
    d
}
