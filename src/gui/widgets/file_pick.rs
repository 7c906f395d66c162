//! A path field with a "Browse…" dialog drawn in egui itself. Native dialogs (GTK, the desktop
//! portal) are not there on a factory PC's kiosk session nor under Xvfb, and the egui file-dialog
//! crates lag behind egui's version; this one lists a folder on a worker thread (a network mount
//! may hang) and never copies or opens the file it points at: the screen decides what to do.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};

use egui::RichText;

use crate::gui::i18n::Messages;

/// What the dialog picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickKind {
    /// An existing file, optionally with one of these extensions (lower case, no dot).
    File(&'static [&'static str]),
    /// A folder (to write exports into).
    Folder,
    /// A file that may not exist yet (to save to): a folder and a name typed in the field.
    SaveFile,
}

/// One entry of a listed folder.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    dir: bool,
}

struct Listing {
    dir: PathBuf,
    entries: Result<Vec<Entry>, String>,
}

struct Browser {
    dir: PathBuf,
    listing: Option<Listing>,
    pending: Option<Receiver<Listing>>,
}

/// A path field with a browse dialog. Keep one per field in the screen's state.
pub struct FilePick {
    id: egui::Id,
    kind: PickKind,
    text: String,
    browser: Option<Browser>,
    label: Option<&'static str>,
}

impl FilePick {
    /// A picker; `id_salt` must be unique on its screen.
    pub fn new(id_salt: &str, kind: PickKind) -> Self {
        Self {
            id: egui::Id::unique(("file_pick", id_salt)),
            kind,
            text: String::new(),
            browser: None,
            label: None,
        }
    }

    /// Shows the message `key` before the field and names the field by it (screen readers, tests).
    pub fn labelled(mut self, key: &'static str) -> Self {
        self.label = Some(key);
        self
    }

    /// The path in the field, if any was typed or chosen.
    pub fn path(&self) -> Option<PathBuf> {
        let t = self.text.trim();
        (!t.is_empty()).then(|| PathBuf::from(t))
    }

    /// Puts a path in the field (a default, or a test's choice).
    pub fn set_path(&mut self, path: &Path) {
        self.text = path.display().to_string();
    }

    /// Whether the browse dialog is open.
    pub fn is_browsing(&self) -> bool {
        self.browser.is_some()
    }

    /// Draws the field and its "Browse…" button, and the dialog when open. Returns whether the
    /// path changed this frame (typed or chosen).
    pub fn ui(&mut self, ui: &mut egui::Ui, tr: &Messages) -> bool {
        let mut changed = false;
        ui.horizontal(|ui| {
            let label = self.label.map(|key| ui.label(tr.t(key)).id);
            let mut field = ui.add(
                egui::TextEdit::singleline(&mut self.text)
                    .desired_width(420.0)
                    .hint_text(tr.t("file.hint")),
            );
            if let Some(id) = label {
                field = field.labelled_by(id);
            }
            changed |= field.changed();
            if ui.button(tr.t("file.browse")).clicked() {
                // Where to start is found on the worker too: even a stat may hang on a dead mount.
                self.browser = Some(Browser {
                    dir: PathBuf::new(),
                    listing: None,
                    pending: Some(list_on_worker(ui.ctx(), Start::Typed(self.text.clone()))),
                });
            }
        });
        if let Some(chosen) = self.dialog(ui, tr) {
            self.text = chosen.display().to_string();
            changed = true;
        }
        changed
    }

    fn dialog(&mut self, ui: &mut egui::Ui, tr: &Messages) -> Option<PathBuf> {
        let kind = self.kind;
        let browser = self.browser.as_mut()?;
        if let Some(rx) = &browser.pending
            && let Ok(listing) = rx.try_recv()
        {
            browser.dir = listing.dir.clone();
            browser.listing = Some(listing);
            browser.pending = None;
        }
        let mut go_to: Option<PathBuf> = None;
        let mut chosen: Option<PathBuf> = None;
        let mut close = false;
        let modal = egui::Modal::new(self.id).show(ui.ctx(), |ui| {
            ui.set_min_width(560.0);
            ui.heading(match kind {
                PickKind::Folder => tr.t("file.choose_folder"),
                _ => tr.t("file.choose_file"),
            });
            ui.label(RichText::new(browser.dir.display().to_string()).monospace());
            ui.horizontal(|ui| {
                if let Some(parent) = browser.dir.parent()
                    && ui.button(tr.t("file.up")).clicked()
                {
                    go_to = Some(parent.to_path_buf());
                }
                if matches!(kind, PickKind::Folder | PickKind::SaveFile)
                    && ui.button(tr.t("file.this_folder")).clicked()
                {
                    chosen = Some(browser.dir.clone());
                }
                if ui.button(tr.t("common.cancel")).clicked() {
                    close = true;
                }
            });
            ui.separator();
            match &browser.listing {
                None => {
                    ui.label(tr.t("file.reading"));
                }
                Some(Listing {
                    entries: Err(e), ..
                }) => {
                    ui.label(format!(
                        "▲ {}",
                        tr.f(
                            "file.unreadable",
                            &[("dir", &browser.dir.display().to_string()), ("error", e)]
                        )
                    ));
                }
                Some(Listing {
                    dir,
                    entries: Ok(entries),
                }) => {
                    egui::ScrollArea::vertical()
                        .max_height(420.0)
                        .show(ui, |ui| {
                            for e in entries
                                .iter()
                                .filter(|e| e.dir || shows_file(kind, &e.name))
                            {
                                let label = if e.dir {
                                    format!("▸ {}/", e.name)
                                } else {
                                    e.name.clone()
                                };
                                if ui.button(label).clicked() {
                                    let path = dir.join(&e.name);
                                    if e.dir {
                                        go_to = Some(path);
                                    } else {
                                        chosen = Some(path);
                                    }
                                }
                            }
                        });
                }
            }
        });
        if let Some(dir) = go_to {
            browser.pending = Some(list_on_worker(ui.ctx(), Start::Dir(dir.clone())));
            browser.dir = dir;
            browser.listing = None;
        }
        if let Some(path) = &chosen
            && kind == PickKind::SaveFile
            && path.is_dir()
        {
            // Saving: a folder was chosen; keep the name already typed, if any.
            let name = PathBuf::from(self.text.trim())
                .file_name()
                .map(|n| n.to_os_string());
            self.browser = None;
            return Some(match name {
                Some(n) => path.join(n),
                None => path.clone(),
            });
        }
        if chosen.is_some() || close || modal.should_close() {
            self.browser = None;
        }
        chosen
    }
}

/// Whether a file of this name is offered for `kind`.
fn shows_file(kind: PickKind, name: &str) -> bool {
    match kind {
        PickKind::Folder => false,
        PickKind::SaveFile => true,
        PickKind::File(exts) => {
            exts.is_empty()
                || Path::new(name)
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| exts.contains(&e.to_ascii_lowercase().as_str()))
        }
    }
}

/// Where a listing starts.
enum Start {
    /// What the field holds: its folder if it has one, else the working folder.
    Typed(String),
    /// This folder.
    Dir(PathBuf),
}

/// The folder to list for `typed`: the field's folder if it has one, else the working folder.
fn start_dir(typed: &str) -> PathBuf {
    let typed = PathBuf::from(typed.trim());
    let dir = if typed.is_dir() {
        Some(typed)
    } else {
        typed
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
    };
    dir.or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Lists a folder on a worker: folders first, then files, each by name; hidden entries left out.
fn list_on_worker(ctx: &egui::Context, start: Start) -> Receiver<Listing> {
    let (tx, rx) = mpsc::channel();
    let ctx = ctx.clone();
    let spawned = std::thread::Builder::new()
        .name("file-pick".into())
        .spawn(move || {
            let dir = match start {
                Start::Typed(text) => start_dir(&text),
                Start::Dir(dir) => dir,
            };
            let entries = read_entries(&dir);
            let _ = tx.send(Listing { dir, entries });
            ctx.request_repaint();
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start a worker thread to list a folder: {e}");
    }
    rx
}

fn read_entries(dir: &Path) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            // Follows symlinks: a link to a folder is browsed like one.
            let dir = std::fs::metadata(e.path())
                .map(|m| m.is_dir())
                .unwrap_or(false);
            Some(Entry { name, dir })
        })
        .collect();
    entries.sort_by(|a, b| b.dir.cmp(&a.dir).then_with(|| a.name.cmp(&b.name)));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_folders_first_and_filters_files_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("zeta")).unwrap();
        std::fs::write(dir.path().join("a.pem"), "x").unwrap();
        std::fs::write(dir.path().join("b.txt"), "x").unwrap();
        std::fs::write(dir.path().join(".hidden.pem"), "x").unwrap();
        let entries = read_entries(dir.path()).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["zeta", "a.pem", "b.txt"]);
        let pem = PickKind::File(&["pem", "key"]);
        assert!(shows_file(pem, "A.PEM"));
        assert!(!shows_file(pem, "b.txt"));
        assert!(!shows_file(PickKind::Folder, "a.pem"));
    }

    #[test]
    fn browsing_starts_in_the_fields_folder_or_the_working_folder() {
        let dir = tempfile::tempdir().unwrap();
        let typed = dir.path().display().to_string();
        assert_eq!(start_dir(&typed), dir.path());
        let file = dir.path().join("not-yet.csv").display().to_string();
        assert_eq!(start_dir(&file), dir.path());
        assert_eq!(start_dir("  "), std::env::current_dir().unwrap());
    }

    #[test]
    fn an_unreadable_folder_is_a_message_not_a_panic() {
        let err = read_entries(Path::new("/nonexistent/dps-station")).unwrap_err();
        assert!(!err.is_empty());
    }
}
