//! The builder's side: choose a mode, start the helper, answer its id-map request, stream its
//! output, return the step's exit status.

use std::io::{BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::detect::HostFacts;
use crate::idmap::{HostIds, IdMap, IdMapPlan, MapMethod};
use crate::output::{LineSplitter, OutputLine, Stream};
use crate::protocol::{self, FailKind, FromHelper, Request, ToHelper, HELPER_MARKER};
use crate::{Isolation, RootFs, RunSpec, SandboxError};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepStatus {
    /// The exit code; 128+n when the main process was killed by signal n (shell convention).
    pub code: i32,
}

impl StepStatus {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Cancels a running step from any thread: the helper kills the step's init, which takes every
/// process of the step with it, and [`Sandbox::run_cancellable`] returns
/// [`SandboxError::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// A handle not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation (idempotent).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether [`CancelHandle::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How often a running step checks its [`CancelHandle`].
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// What a successful probe of a mode found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReport {
    /// A fresh `/proc` can be mounted (else steps get the host's `/proc` bound).
    pub fresh_proc: bool,
    /// Overlay with `userxattr` works (userns mode).
    pub overlay: bool,
}

/// Configures a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxBuilder {
    helper: PathBuf,
    isolation: Option<Isolation>,
    force_single_id: bool,
}

/// A ready sandbox: a mode that was checked to work, the helper binary, and the id maps.
#[derive(Debug, Clone)]
pub struct Sandbox {
    helper: PathBuf,
    isolation: Isolation,
    plan: IdMapPlan,
    report: ProbeReport,
}

impl Default for SandboxBuilder {
    fn default() -> Self {
        SandboxBuilder {
            helper: PathBuf::from("/proc/self/exe"),
            isolation: None,
            force_single_id: false,
        }
    }
}

impl SandboxBuilder {
    /// The binary re-executed as the helper (default `/proc/self/exe`). It must call
    /// [`crate::run_helper_if_requested`] first thing in `main`.
    pub fn helper(mut self, path: impl Into<PathBuf>) -> Self {
        self.helper = path.into();
        self
    }

    /// Forces a mode (`--isolation`) instead of detecting one; it is still probed.
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = Some(isolation);
        self
    }

    /// Uses the single-id map even when subordinate ranges exist.
    pub fn force_single_id(mut self, yes: bool) -> Self {
        self.force_single_id = yes;
        self
    }

    /// Probes the forced mode, or `userns` when none is forced, and returns the sandbox if it
    /// works; otherwise one [`SandboxError::NoIsolation`] message naming the causes and their
    /// fixes. `auto` never falls back to chroot by itself: chroot does not isolate a step from
    /// the builder, so only an explicit [`SandboxBuilder::isolation`] chooses it (with a
    /// warning).
    pub fn build(self) -> Result<Sandbox, SandboxError> {
        let isolation = self.isolation.unwrap_or(Isolation::Userns);
        let plan = match isolation {
            // Without a user namespace ids are the host's: files keep the ids the step gave.
            Isolation::Chroot => IdMapPlan::identity(),
            Isolation::Userns => IdMapPlan::for_host(&HostIds::read(), self.force_single_id),
        };
        if isolation == Isolation::Userns && plan.method == MapMethod::SingleId {
            tracing::warn!(
                "no subordinate id range (or no newuidmap) for this user: RUN steps get a single id, chown to another user and USER with another uid will fail"
            );
        }
        let mut sandbox = Sandbox {
            helper: self.helper.clone(),
            isolation,
            plan,
            report: ProbeReport {
                fresh_proc: false,
                overlay: false,
            },
        };
        match sandbox.probe() {
            Ok(report) => {
                sandbox.report = report;
                if !report.fresh_proc {
                    tracing::warn!(
                        "a fresh /proc is refused here (masked /proc?): {}",
                        if isolation == Isolation::Userns {
                            "steps see the host's /proc"
                        } else {
                            "steps get no /proc"
                        }
                    );
                }
                if isolation == Isolation::Chroot {
                    tracing::warn!(
                        "--isolation chroot: RUN steps are not isolated from the builder (they run as its root, as under Kaniko); use it only for trusted Dockerfiles"
                    );
                }
                tracing::debug!(?isolation, ?report, "sandbox mode chosen");
                Ok(sandbox)
            }
            Err(e) => {
                tracing::debug!(?isolation, error = %e, "sandbox mode unusable");
                let mut facts = HostFacts::read();
                match isolation {
                    Isolation::Userns => facts.userns_error = Some(e.to_string()),
                    Isolation::Chroot => facts.chroot_error = Some(e.to_string()),
                }
                facts.chroot_offered = self.isolation.is_none();
                Err(SandboxError::NoIsolation(facts.explain_no_isolation()))
            }
        }
    }
}

fn helper_error(helper: &Path, message: impl Into<String>) -> SandboxError {
    SandboxError::Helper {
        helper: helper.to_owned(),
        message: message.into(),
    }
}

fn canonical(path: &Path) -> Result<PathBuf, SandboxError> {
    std::fs::canonicalize(path).map_err(|source| SandboxError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Resolves host paths on the host, so that no symlink is followed later inside the step's
/// root.
fn canonicalize_host_paths(spec: &RunSpec) -> Result<RunSpec, SandboxError> {
    let mut spec = spec.clone();
    spec.scratch_dir = canonical(&spec.scratch_dir)?;
    match &mut spec.root {
        RootFs::Overlay { lowers, upper } => {
            for l in lowers.iter_mut() {
                *l = canonical(l)?;
            }
            *upper = canonical(upper)?;
        }
        RootFs::Dir(d) => *d = canonical(d)?,
    }
    for m in &mut spec.mounts {
        match &mut m.kind {
            crate::MountKind::Bind { source, .. } | crate::MountKind::Cache { source, .. } => {
                *source = canonical(source)?
            }
            crate::MountKind::Tmpfs { .. } | crate::MountKind::Secret { .. } => {}
        }
    }
    for f in [
        &mut spec.etc.hosts,
        &mut spec.etc.resolv_conf,
        &mut spec.etc.hostname,
    ]
    .into_iter()
    .flatten()
    {
        *f = canonical(f)?;
    }
    Ok(spec)
}

enum Event {
    Output(Stream, Vec<u8>),
    OutputEnd,
    Control(std::io::Result<Option<FromHelper>>),
}

fn pump_output(mut r: impl Read, stream: Stream, tx: mpsc::Sender<Event>) {
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut send = |l: &[u8]| {
        let _ = tx.send(Event::Output(stream, l.to_vec()));
    };
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => splitter.push(&buf[..n], &mut send),
        }
    }
    splitter.finish(&mut send);
    let _ = tx.send(Event::OutputEnd);
}

impl Sandbox {
    /// Detects the mode with the default helper (`/proc/self/exe`).
    pub fn detect() -> Result<Sandbox, SandboxError> {
        SandboxBuilder::default().build()
    }

    /// A builder to choose the helper binary, force a mode or the single-id map.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// The mode in use.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// The id maps of the steps' user namespaces (userns mode): translate the owners found in
    /// an upper dir with [`IdMap::uid_to_container`] / [`IdMap::gid_to_container`]. In chroot
    /// mode ids are the host's, i.e. the identity map.
    pub fn id_map(&self) -> &IdMap {
        &self.plan.map
    }

    /// Whether steps may use [`RootFs::Overlay`] (else give a materialised [`RootFs::Dir`]).
    pub fn supports_overlay(&self) -> bool {
        self.isolation == Isolation::Userns && self.report.overlay
    }

    /// The id map through which the helper shows layers to the step (real root in userns
    /// mode), if any.
    fn layer_map(&self) -> Option<crate::IdMap> {
        (self.isolation == Isolation::Userns && self.plan.idmapped_layers)
            .then(|| self.plan.map.clone())
    }

    /// What the probe found when this sandbox was built.
    pub fn probe_report(&self) -> ProbeReport {
        self.report
    }

    /// Checks that this sandbox's mode works on this host.
    pub fn probe(&self) -> Result<ProbeReport, SandboxError> {
        let mut report = None;
        self.exchange(
            Request::Probe {
                isolation: self.isolation,
                layer_map: self.layer_map(),
            },
            &CancelHandle::new(),
            &mut |_| {},
            &mut |m| {
                if let FromHelper::ProbeOk {
                    fresh_proc,
                    overlay,
                } = m
                {
                    report = Some(ProbeReport {
                        fresh_proc: *fresh_proc,
                        overlay: *overlay,
                    });
                }
            },
        )?;
        report.ok_or_else(|| helper_error(&self.helper, "the probe ended without a result"))
    }

    /// Runs one step; `on_line` gets every output line as it comes. Blocks until the step and
    /// every process it started are gone.
    pub fn run(
        &self,
        spec: &RunSpec,
        on_line: impl FnMut(OutputLine<'_>),
    ) -> Result<StepStatus, SandboxError> {
        self.run_cancellable(spec, &CancelHandle::new(), on_line)
    }

    /// [`Sandbox::run`] that stops the step (and every process it started) when `cancel` is
    /// cancelled, returning [`SandboxError::Cancelled`].
    pub fn run_cancellable(
        &self,
        spec: &RunSpec,
        cancel: &CancelHandle,
        mut on_line: impl FnMut(OutputLine<'_>),
    ) -> Result<StepStatus, SandboxError> {
        spec.validate()?;
        if matches!(spec.root, RootFs::Overlay { .. }) && !self.supports_overlay() {
            return Err(SandboxError::InvalidSpec(
                "an overlay root needs --isolation=userns; chroot mode takes a materialised rootfs dir".into(),
            ));
        }
        if spec.network == crate::Network::Sandbox {
            crate::network::UserModeNetwork::check()?;
        }
        let spec = canonicalize_host_paths(spec)?;
        let mapped_uids = (self.isolation == Isolation::Userns).then(|| {
            self.plan
                .map
                .uids
                .iter()
                .map(|e| (e.inside, e.count))
                .collect()
        });
        let mut code = None;
        self.exchange(
            Request::Run {
                spec: Box::new(spec),
                isolation: self.isolation,
                mapped_uids,
                layer_map: self.layer_map(),
            },
            cancel,
            &mut on_line,
            &mut |m| {
                if let FromHelper::Exited { code: c } = m {
                    code.get_or_insert(*c);
                }
            },
        )?;
        code.map(|code| StepStatus { code }).ok_or_else(|| {
            helper_error(
                &self.helper,
                "the helper ended without reporting the step's exit",
            )
        })
    }

    /// Starts the helper, sends `request`, serves the id-map handshake, streams output until
    /// both streams and the control socket are closed. The first failure wins.
    fn exchange(
        &self,
        request: Request,
        cancel: &CancelHandle,
        on_line: &mut dyn FnMut(OutputLine<'_>),
        on_message: &mut dyn FnMut(&FromHelper),
    ) -> Result<(), SandboxError> {
        let (ours, theirs) = UnixStream::pair()
            .map_err(|e| helper_error(&self.helper, format!("socketpair: {e}")))?;
        // The helper needs no environment, and the builder's may hold credentials that the
        // step must not find in its init's /proc/1/environ.
        let mut child = Command::new(&self.helper)
            .arg(HELPER_MARKER)
            .env_clear()
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| helper_error(&self.helper, format!("cannot start: {e}")))?;
        let result = self.converse(&ours, request, cancel, &mut child, on_line, on_message);
        if result.is_err() {
            let _ = child.kill();
        }
        let status = child.wait();
        result?;
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(helper_error(&self.helper, format!("exited with {s}"))),
            Err(e) => Err(helper_error(&self.helper, format!("wait: {e}"))),
        }
    }

    fn converse(
        &self,
        ctl: &UnixStream,
        request: Request,
        cancel: &CancelHandle,
        child: &mut std::process::Child,
        on_line: &mut dyn FnMut(OutputLine<'_>),
        on_message: &mut dyn FnMut(&FromHelper),
    ) -> Result<(), SandboxError> {
        let io = |what: &str, e: std::io::Error| helper_error(&self.helper, format!("{what}: {e}"));
        let pid = child.id();
        let mut writer = ctl.try_clone().map_err(|e| io("socket", e))?;
        protocol::send(&mut writer, &ToHelper::Request(Box::new(request)))
            .map_err(|e| io("sending the request", e))?;

        let (tx, rx) = mpsc::channel();
        let reader = ctl.try_clone().map_err(|e| io("socket", e))?;
        let ctl_tx = tx.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(reader);
            loop {
                let msg = protocol::recv::<FromHelper>(&mut r);
                let end = !matches!(msg, Ok(Some(_)));
                if ctl_tx.send(Event::Control(msg)).is_err() || end {
                    break;
                }
            }
        });
        let mut open_streams = 0;
        for (pipe, stream) in [
            (
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                Stream::Stdout,
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                Stream::Stderr,
            ),
        ] {
            if let Some(pipe) = pipe {
                let tx = tx.clone();
                open_streams += 1;
                std::thread::spawn(move || pump_output(pipe, stream, tx));
            }
        }
        drop(tx);

        // Lives until the step is over: dropping it stops the user-mode network.
        let mut network: Option<crate::network::UserModeNetwork> = None;
        let mut control_open = true;
        let mut failure: Option<SandboxError> = None;
        let mut cancelled = false;
        while control_open || open_streams > 0 {
            let event = match rx.recv_timeout(CANCEL_POLL) {
                Ok(event) => event,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if cancel.is_cancelled() && !cancelled {
                        // The helper watches its end of the socket and kills the step's init.
                        cancelled = true;
                        let _ = ctl.shutdown(std::net::Shutdown::Both);
                        failure = Some(SandboxError::Cancelled);
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            match event {
                Event::Output(stream, bytes) => on_line(OutputLine {
                    stream,
                    bytes: &bytes,
                }),
                Event::OutputEnd => open_streams -= 1,
                Event::Control(Ok(None)) => control_open = false,
                Event::Control(Err(e)) => {
                    control_open = false;
                    failure.get_or_insert(io("reading from the helper", e));
                }
                Event::Control(Ok(Some(msg))) => match &msg {
                    FromHelper::NeedIdMap => {
                        let reply = match self.plan.install(pid) {
                            Ok(()) => ToHelper::IdMapWritten,
                            Err(e) => {
                                let m = e.to_string();
                                failure.get_or_insert(e);
                                ToHelper::IdMapFailed(m)
                            }
                        };
                        protocol::send(&mut writer, &reply)
                            .map_err(|e| io("answering the helper", e))?;
                    }
                    FromHelper::NeedNetwork => {
                        let single_id = self.plan.method == MapMethod::SingleId;
                        let reply = match crate::network::UserModeNetwork::attach(pid, single_id) {
                            Ok(n) => {
                                network = Some(n);
                                ToHelper::NetworkReady
                            }
                            Err(e) => {
                                let m = e.to_string();
                                failure.get_or_insert(e);
                                ToHelper::NetworkFailed(m)
                            }
                        };
                        protocol::send(&mut writer, &reply)
                            .map_err(|e| io("answering the helper", e))?;
                    }
                    FromHelper::Warning(w) => tracing::warn!(target: "rbuild_sandbox", "{w}"),
                    FromHelper::Failed { kind, message } if !cancelled => {
                        failure.get_or_insert(match kind {
                            FailKind::Setup => SandboxError::Setup(message.clone()),
                            FailKind::User => SandboxError::User(message.clone()),
                            FailKind::Exec => SandboxError::Exec(message.clone()),
                        });
                    }
                    FromHelper::Failed { .. } => {}
                    _ => on_message(&msg),
                },
            }
        }
        drop(network);
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
