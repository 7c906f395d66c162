//! A throwaway PostgreSQL cluster per test: `initdb` into a temp dir, `pg_ctl start` on a free port
//! of 127.0.0.1 (and a Unix socket in the same dir), stopped and deleted when dropped.
//!
//! PostgreSQL refuses to run as root; CI runs as root, so the cluster's commands then run as the
//! `postgres` user that Debian's package creates (`runuser`), and the temp dir is given to it.
//! The binaries are found in `DPS_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else `PATH`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The superuser the cluster is made with; tests connect as it to migrate (the database owner).
pub const ADMIN: &str = "dps_admin";

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl PgCluster {
    /// Makes and starts a cluster with one database, `central`.
    pub fn start() -> PgCluster {
        let bin = find_bin();
        let dir = tempfile::Builder::new()
            .prefix("dps-pg-")
            .tempdir()
            .expect("temp dir for the cluster");
        let as_postgres = unsafe { libc::geteuid() } == 0;
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown cluster dir");
        }
        let port = free_port();
        let cluster = PgCluster {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = cluster.data_dir();
        let out = cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                ADMIN,
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        cluster.start_again();
        cluster.psql("postgres", "CREATE DATABASE central");
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The socket and log directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `postgres://USER@127.0.0.1:PORT/DB`.
    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// The owner's URL of the `central` database (for migrations and for tampering as an attacker).
    pub fn admin_url(&self) -> String {
        self.url(ADMIN, "central")
    }

    /// Makes a login role in `dps_central_service` (run after the migrations made that role) and
    /// returns the URL the service connects with.
    pub fn service_login(&self, login: &str) -> String {
        self.psql(
            "central",
            &format!("CREATE ROLE {login} LOGIN IN ROLE dps_central_service"),
        );
        self.url(login, "central")
    }

    /// Starts (again) the cluster and waits until it accepts connections.
    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        let data = self.data_dir();
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            text(&out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the cluster at once (`-m immediate`: as if the server died), for outage tests.
    pub fn stop(&self) {
        let data = self.data_dir();
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        assert!(out.status.success(), "pg_ctl stop failed: {}", text(&out));
    }

    /// Runs SQL with `psql` as the superuser; panics with psql's message if it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.try_psql(ADMIN, db, sql);
        assert!(out.status.success(), "psql `{sql}` failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs SQL with `psql` as `user`; the caller looks at the outcome (e.g. a refused UPDATE).
    pub fn try_psql(&self, user: &str, db: &str, sql: &str) -> Output {
        let port = self.port.to_string();
        Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                user,
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let pid_file = data.join("postmaster.pid");
        if pid_file.exists() {
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap_or_default(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
    }
}

/// Waits up to `limit` for `check` to hold (for the outage tests: "the outbox drains").
pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

fn find_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("DPS_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    panic!(
        "PostgreSQL's initdb was not found: run `installer/deps.sh --test` (Debian package postgresql) or set DPS_PG_BIN"
    );
}

fn postgres_ids() -> (u32, u32) {
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .expect("id -u postgres");
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse().expect(
        "the `postgres` user is needed to run PostgreSQL as root: install Debian's postgresql package",
    );
    let out = Command::new("id")
        .args(["-g", "postgres"])
        .output()
        .expect("id -g postgres");
    let gid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("postgres gid");
    (uid, gid)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
