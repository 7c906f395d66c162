//! A throwaway PostgreSQL cluster: `initdb` into a temp dir, `pg_ctl start` on a free port of
//! 127.0.0.1 (and a Unix socket in the same dir), stopped and deleted when dropped. For the test
//! suite and for `bench central`, which must not need an administrator's database.
//!
//! PostgreSQL refuses to run as root; CI runs as root, so the cluster's commands then run as the
//! `postgres` user that Debian's package creates (`runuser`), and the temp dir is given to it.
//! The binaries are found in `DPS_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The superuser the cluster is made with; it owns the `central` database (migrations run as it).
pub const ADMIN: &str = "dps_admin";

/// Why a throwaway cluster could not be made or driven.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL's initdb was not found: install Debian's postgresql package (`installer/deps.sh --test`) or set DPS_PG_BIN to its bin directory"
    )]
    NoPostgres,
    #[error(
        "running PostgreSQL as root needs the `postgres` user that Debian's postgresql package creates: install it"
    )]
    NoPostgresUser,
    #[error("{what} failed: {output}")]
    Command { what: String, output: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// A running throwaway cluster with one database, `central`.
pub struct TempCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl TempCluster {
    /// Makes and starts a cluster (fsync off: it is thrown away) with an empty `central` database.
    pub fn start() -> Result<TempCluster, ClusterError> {
        let bin = find_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("dps-pg-")
            .tempdir()
            .map_err(io("make a temp dir for the cluster"))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        if as_postgres {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(io("give the cluster's dir to the postgres user"))?;
        }
        let port = free_port()?;
        let cluster = TempCluster {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = cluster.data_dir();
        cluster.run_ok(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                ADMIN,
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
        )?;
        cluster.start_again()?;
        cluster.psql("postgres", "CREATE DATABASE central")?;
        Ok(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The socket and log directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://USER@127.0.0.1:PORT/DB`.
    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// The owner's URL of the `central` database (for migrations).
    pub fn admin_url(&self) -> String {
        self.url(ADMIN, "central")
    }

    /// Makes a login role in `dps_central_service` (after the migrations made that role) and returns
    /// the URL the service connects with.
    pub fn service_login(&self, login: &str) -> Result<String, ClusterError> {
        self.psql(
            "central",
            &format!("CREATE ROLE {login} LOGIN IN ROLE dps_central_service"),
        )?;
        Ok(self.url(login, "central"))
    }

    /// Starts (again) the cluster and waits until it accepts connections.
    pub fn start_again(&self) -> Result<(), ClusterError> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        let data = self.data_dir();
        self.run_ok(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .map_err(|e| match e {
            ClusterError::Command { what, output } => ClusterError::Command {
                what,
                output: format!(
                    "{output}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            },
            other => other,
        })
    }

    /// Stops the cluster at once (`-m immediate`: as if the server died), for outage tests.
    pub fn stop(&self) -> Result<(), ClusterError> {
        let data = self.data_dir();
        self.run_ok(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    /// Runs SQL with `psql` as the superuser; returns what it printed (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, ClusterError> {
        let out = self.try_psql(ADMIN, db, sql)?;
        if !out.status.success() {
            return Err(ClusterError::Command {
                what: format!("psql `{sql}`"),
                output: text(&out),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs SQL with `psql` as `user`; the caller looks at the outcome (e.g. a refused UPDATE).
    pub fn try_psql(&self, user: &str, db: &str, sql: &str) -> Result<Output, ClusterError> {
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
            .map_err(io("run psql"))
    }

    fn run_ok(&self, tool: &str, args: &[&str]) -> Result<(), ClusterError> {
        let out = self.run(tool, args)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ClusterError::Command {
                what: tool.to_string(),
                output: text(&out),
            })
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<Output, ClusterError> {
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
            .map_err(io(&format!("run {}", program.display())))
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        if data.join("postmaster.pid").exists() {
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D",
                    &data.to_string_lossy(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
    }
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        what: what.to_string(),
        source,
    }
}

fn find_bin() -> Result<PathBuf, ClusterError> {
    if let Some(dir) = std::env::var_os("DPS_PG_BIN") {
        return Ok(PathBuf::from(dir));
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
        return Ok(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .find(|dir| dir.join("initdb").exists())
        .ok_or(ClusterError::NoPostgres)
}

fn postgres_ids() -> Result<(u32, u32), ClusterError> {
    let id = |flag: &str| -> Result<u32, ClusterError> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(io("run id"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| ClusterError::NoPostgresUser)
    };
    Ok((id("-u")?, id("-g")?))
}

fn free_port() -> Result<u16, ClusterError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(io("find a free port on 127.0.0.1"))?;
    Ok(listener
        .local_addr()
        .map_err(io("find a free port on 127.0.0.1"))?
        .port())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
