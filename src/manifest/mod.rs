//! Microchip Trust&GO manifests (issue 16): the secure elements of a reel arrive provisioned at
//! Microchip, and the manifest (a JSON list of JWS-signed entries, one per secure element) says
//! which device certificates they hold. The station verifies every entry against the manifest
//! signer certificate given to it, and only verified entries go on to the ledger and DPS.
//!
//! - [`read_manifest`]: reads a manifest file (streamed: entries are verified as they are parsed,
//!   so 100,000 entries never sit in memory as JSON), hashes it, and sorts its entries into
//!   verified and refused, each refusal naming the entry. A duplicate secure element is refused
//!   after its first entry.
//! - [`ManifestSigner`]: the `--signer` certificate (`kid` / `x5t#S256` of entries).
//! - [`build`]: makes signed entries the way Microchip's tools do, for tests and `bench manifest`.
//!
//! Layering: `manifest` sits beside `identity` and imports only it (registration-ID rules, PEM);
//! recording and enrolling is `station::manifest_import`'s job.

pub mod build;
mod entry;
mod error;
mod signer;

use std::collections::HashMap;
use std::fmt;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use entry::VerifiedEntry;
pub use error::{EntryError, EntryProblem, ManifestError};
pub use signer::ManifestSigner;

/// Where a manifest came from: recorded with every identity it gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The file's name (without its directory).
    pub file_name: String,
    /// SHA-256 of the file as read, lowercase hex.
    pub file_sha256: String,
    /// SHA-256 thumbprint of the signer certificate, uppercase hex.
    pub signer_thumbprint: String,
}

/// A manifest read and verified.
#[derive(Debug, Clone)]
pub struct ManifestReport {
    /// The file.
    pub path: PathBuf,
    /// What is recorded with its identities.
    pub provenance: Provenance,
    /// Entries that passed every check, in file order.
    pub verified: Vec<VerifiedEntry>,
    /// Entries refused, in file order, each naming itself and why.
    pub refused: Vec<EntryError>,
}

impl ManifestReport {
    /// Entries in the file.
    pub fn total(&self) -> usize {
        self.verified.len() + self.refused.len()
    }
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Verifies the list's elements one by one as the parser reaches them.
struct Entries<'a> {
    signer: &'a ManifestSigner,
    /// Counts the entries handed to the verifiers (a screen's progress).
    read: Option<&'a std::sync::atomic::AtomicUsize>,
    verified: Vec<VerifiedEntry>,
    refused: Vec<EntryError>,
}

impl<'de> Visitor<'de> for &mut Entries<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON list of signed entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // The parser (this thread) hands entries to one verifier per core through a bounded
        // queue: memory stays at a few hundred entries in flight, and ECDSA runs on every core.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let signer = self.signer;
        let (results, parse_error) = std::thread::scope(|scope| {
            let (jobs, queue) = mpsc::sync_channel::<(usize, Value)>(256);
            let queue = Arc::new(Mutex::new(queue));
            let (done, results) = mpsc::channel();
            for _ in 0..workers {
                let queue = Arc::clone(&queue);
                let done = done.clone();
                scope.spawn(move || {
                    let mut issuers = entry::IssuerCache::default();
                    loop {
                        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((index, value)) = job else { break };
                        let verdict = entry::verify_entry(index, &value, signer, &mut issuers);
                        if done.send((index, verdict)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done);
            let mut index = 0;
            let mut parse_error = None;
            loop {
                match seq.next_element::<Value>() {
                    Ok(Some(value)) => {
                        if jobs.send((index, value)).is_err() {
                            break;
                        }
                        index += 1;
                        if let Some(read) = self.read {
                            read.store(index, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        parse_error = Some(e);
                        break;
                    }
                }
            }
            drop(jobs);
            let mut all: Vec<(usize, Result<VerifiedEntry, EntryError>)> = results.iter().collect();
            all.sort_unstable_by_key(|(i, _)| *i);
            (all, parse_error)
        });
        if let Some(e) = parse_error {
            return Err(e);
        }
        // Duplicates in file order: the first entry of a secure element stands.
        let mut first_of: HashMap<String, usize> = HashMap::new();
        for (index, verdict) in results {
            match verdict {
                Ok(e) => match first_of.get(&e.unique_id) {
                    Some(&first) => self.refused.push(EntryError {
                        index,
                        unique_id: Some(e.unique_id),
                        problem: EntryProblem::Duplicate { first },
                    }),
                    None => {
                        first_of.insert(e.unique_id.clone(), index);
                        self.verified.push(e);
                    }
                },
                Err(e) => self.refused.push(e),
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for &mut Entries<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

/// Reads and verifies the manifest at `path` against `signer`.
///
/// A file that is not a JSON list, or holds no entry, is refused whole
/// ([`ManifestError`]); otherwise each entry is verified on its own and a bad one is listed in
/// [`ManifestReport::refused`] while the others stand.
pub fn read_manifest(
    path: &Path,
    signer: &ManifestSigner,
) -> Result<ManifestReport, ManifestError> {
    read_manifest_counting(path, signer, None)
}

/// [`read_manifest`] that stores in `read` how many entries it has reached so far, for a
/// screen's progress while a large reel is verified on a worker.
pub fn read_manifest_counting(
    path: &Path,
    signer: &ManifestSigner,
    read: Option<&std::sync::atomic::AtomicUsize>,
) -> Result<ManifestReport, ManifestError> {
    let file = std::fs::File::open(path).map_err(|cause| ManifestError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut reader = Hashing {
        inner: BufReader::with_capacity(1 << 16, file),
        hash: Sha256::new(),
    };
    let mut entries = Entries {
        signer,
        read,
        verified: Vec::new(),
        refused: Vec::new(),
    };
    let parsed = {
        let mut de = serde_json::Deserializer::from_reader(&mut reader);
        (&mut entries).deserialize(&mut de).and_then(|()| de.end())
    };
    if let Err(e) = parsed {
        if e.is_io() {
            return Err(ManifestError::Read {
                path: path.to_path_buf(),
                cause: std::io::Error::other(e.to_string()),
            });
        }
        return Err(ManifestError::NotJson {
            path: path.to_path_buf(),
            reason: e.to_string(),
        });
    }
    // Whatever trails the list was read by `end()`; the hash covers the whole file.
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .map_err(|cause| ManifestError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
    if entries.verified.is_empty() && entries.refused.is_empty() {
        return Err(ManifestError::Empty {
            path: path.to_path_buf(),
        });
    }
    let provenance = Provenance {
        file_name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        file_sha256: hex::encode(reader.hash.finalize()),
        signer_thumbprint: signer.thumbprint(),
    };
    tracing::info!(
        manifest = %path.display(),
        verified = entries.verified.len(),
        refused = entries.refused.len(),
        "manifest read"
    );
    Ok(ManifestReport {
        path: path.to_path_buf(),
        provenance,
        verified: entries.verified,
        refused: entries.refused,
    })
}
