"""`tagd run`: the service's main loop.

Threads:
- main (this module): signals, config reloads, systemd notifications and
  watchdog, the idle-model sweep; never touches a photo;
- scan (work.py): does every scan, one at a time, and owns the catalog;
- APScheduler's thread (schedule.py) and watchdog's inotify thread plus a
  debounce thread (watch.py): they only queue scan requests.

Signals reach the main loop through a socketpair (signal.set_wakeup_fd), so
it reacts at once and the handlers themselves do nothing unsafe:
- SIGTERM / SIGINT: stop. The scan thread finishes the batch in flight (one
  transaction), writes due sidecars, and the process exits 0. If that takes
  longer than daemon.stop_timeout, the process exits 0 anyway: the unfinished
  batch was never committed and is redone on the next start. Sidecars are
  written by a child process (sinks/writer.py), so even a write stuck in the
  kernel on a dead share is given up at the deadline and stays queued.
- SIGHUP: reload the config file. A file that fails to load (or names a
  missing model) is logged and reported, and the daemon goes on with the
  config it has.
- SIGUSR1: scan now.

Other programs (the Stash plugin, `tagd scan`) ask for work through the
control socket (control.py). Writes that failed (Stash down, a read-only
share) are retried by a timer here as soon as their backoff ends, and at once,
backoff or not, when someone asks through the socket.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tagd.catalog.catalog import Catalog
from tagd.config import ConfigError, Settings, load_settings
from tagd.engine.client import Engine, EngineError
from tagd.paths import models_dir, state_dir
from tagd.runtime.manifest import ModelError
from tagd.scan.index import make_walker
from tagd.service import logs
from tagd.service.control import ControlError, ControlSocket, socket_path
from tagd.service.events import EventBus
from tagd.service.lock import InstanceLock
from tagd.service.memory import tune_malloc
from tagd.service.notify import Notifier, watchdog_interval
from tagd.service.priority import lower_priority
from tagd.service.schedule import Schedule
from tagd.service.stats import SERVICE, get_json, put_json
from tagd.service.watch import Watcher
from tagd.service.work import Generation, ScanWorker
from tagd.sinks.select import enabled_sinks

if TYPE_CHECKING:
    from tagd.api.listen import ApiServer
    from tagd.api.state import ApiState

log = logging.getLogger("tagd.service")

TICK = 1.0  # seconds between housekeeping rounds (idle sweep, status, watchdog)
GONE_CHECK = 1.0  # seconds between looks at whether a waiting asker hung up
STALL = 900.0  # a scan with no progress this long stops the watchdog pings
RETRY_CHECK = 30.0  # seconds between looks at the outbox for writes due again
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


def build_generation(engine: Engine, settings: Settings, number: int) -> Generation:
    """A config whose analyzers the analysis process built and whose model files it
    checked (nothing is loaded); ModelError when one is missing or damaged."""
    try:
        shas = engine.call("check", settings, number)
    except EngineError as exc:
        if exc.kind == "model":
            raise ModelError(str(exc)) from None
        raise
    return Generation(settings, number, shas)


class Service:
    def __init__(self, config_path: str | None, settings: Settings) -> None:
        self.config_path = config_path
        self.settings = settings
        self.state_dir = state_dir(settings)
        self.catalog_path = self.state_dir / "catalog.db"
        self.notifier = Notifier()
        self.stop = threading.Event()
        self.lock = InstanceLock(self.state_dir, "tagd run")
        self.worker: ScanWorker | None = None
        self.schedule: Schedule | None = None
        self.tagme: Schedule | None = None  # Stash's TagMe files, [stash] tagme_schedule
        self.watcher: Watcher | None = None
        self.control: ControlSocket | None = None
        self.api: ApiServer | None = None
        self.api_state: ApiState | None = None
        self.events = EventBus()
        self.engine = Engine(
            self.catalog_path,
            log_level=settings.daemon.log_level,
            idle=settings.runtime.idle_unload,
        )
        self._generations = 0
        self._last_retry_check = 0.0
        self._meta: Catalog | None = None
        self._unsaved = False  # the service state changed in another thread
        self._loop_thread = 0  # the thread of the loop (and of _meta)
        self._service: dict[str, object] = {}
        self._status = ""
        self._next_scan: float | None = None

    # ------------------------------------------------------------ start

    def run(self) -> int:
        """Run until SIGTERM/SIGINT. Raises ConfigError, ModelError, CatalogError or
        InstanceLockError before anything starts when it cannot run."""
        self.lock.acquire()
        try:
            return self._run()
        finally:
            self.lock.release()

    def _run(self) -> int:
        settings = self.settings
        for done in lower_priority(settings.daemon.nice, settings.daemon.io_idle):
            log.debug("priority: %s", done)
        tune_malloc()  # before any thread starts
        self._meta = Catalog(self.catalog_path)  # also migrates before the scan thread starts
        self._loop_thread = threading.get_ident()  # the one thread that may use _meta
        try:
            generation = build_generation(self.engine, settings, self._generations)
        except BaseException:
            self.engine.close()
            self._meta.close()
            raise
        wake_r, wake_w = self._install_signals()
        try:
            self.worker = ScanWorker(
                self.catalog_path, generation, self.notifier, self.stop, self.engine, self.events
            )
            self.worker.start()
            self.schedule = Schedule(lambda: self._request("schedule", wake=wake_w))
            self.schedule.start(settings.daemon.schedule)
            self.tagme = Schedule(lambda: self._request("stash tagme schedule", source="tagme"))
            self.tagme.start(_tagme_schedule(settings))
            self._start_watcher(settings)
            self._start_control(settings)
            self._start_api(settings, generation)
            was_paused = bool(get_json(self._meta, SERVICE).get("paused"))
            self._service = {
                "paused": was_paused,
                "pid": os.getpid(),
                "started": time.time(),
                "config": str(settings.source or "built-in defaults"),
            }
            self._save_service()
            if was_paused:
                self.worker.pause(True)
                log.warning("paused before the last stop: scans wait for `tagd resume`")
            if settings.daemon.scan_on_start:
                self.worker.request("start")
            log.info(
                "started: state %s, config %s, profile %s, schedule %r, watching %s",
                self.state_dir,
                settings.source or "built-in defaults",
                settings.profile,
                settings.daemon.schedule,
                "on" if self.watcher and self.watcher.watched else "off",
            )
            self.notifier.ready(self._idle_text())
            code = self._loop(wake_r)
            self._shutdown()
            return code
        finally:
            signal.set_wakeup_fd(-1)
            wake_r.close()
            wake_w.close()
            if self._meta is not None:
                self._meta.close()

    def _install_signals(self) -> tuple[socket.socket, socket.socket]:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for signum in HANDLED:
            # A Python handler that does nothing: the C handler has already
            # written the signal number to the wakeup socket.
            signal.signal(signum, lambda *_: None)
        return wake_r, wake_w

    def _start_watcher(self, settings: Settings) -> None:
        self.watcher = None
        if settings.daemon.watch and settings.library.roots:
            watcher = Watcher(
                settings.library.roots,
                make_walker(settings),
                settings.daemon.watch_debounce,
                lambda roots: self._request("watch", roots),
            )
            watcher.start()
            for problem in watcher.problems:
                log.warning("%s", problem)
            self.watcher = watcher

    def _start_control(self, settings: Settings) -> None:
        path = socket_path(settings, self.state_dir)
        if path is None:
            return
        try:
            self.control = ControlSocket(path, settings.daemon.control_socket_mode, self.command)
        except ControlError as exc:
            # The daemon is useful without it: the plugin then says how to reach it.
            log.warning("%s; the Stash plugin and `tagd scan` cannot reach this daemon", exc)
            return
        self.lock.note(f"socket={path}")
        log.info("control socket %s", path)

    def _start_api(self, settings: Settings, generation: Generation) -> None:
        """The HTTP API ([api] enabled), in a thread of this process: it reads the
        catalog itself and asks the scan thread and the analysis process for the
        rest. The daemon is useful without it: a problem is logged, not fatal."""
        if not settings.api.enabled:
            return
        from tagd.api.app import create_app
        from tagd.api.listen import ApiServer, ListenError, bind, exposure_problem, parse_listen
        from tagd.api.state import ApiState

        try:
            listen = parse_listen(settings.api.listen)
            refused = exposure_problem(settings.api, listen)
            if refused:
                raise ListenError(refused)
            sock = bind(listen)
        except ListenError as exc:
            log.error("HTTP API not started: %s", exc)
            return
        self.api_state = ApiState(
            settings,
            self.state_dir,
            models_dir(settings),
            self.engine,
            generation=generation.number,
            daemon=self,
            events=self.events,
            known_shas=dict(generation.shas),
        )
        self.api = ApiServer(create_app(settings, self.state_dir, self.api_state), sock)
        self.api.start()
        url = dataclasses.replace(listen, port=sock.getsockname()[1]).url  # port 0: the one given
        self.lock.note(f"api={url}")
        log.info(
            "web pages on %s/, HTTP API on %s/api/v1 (documentation: %s/api/docs)", url, url, url
        )

    def _request(
        self,
        trigger: str,
        roots: set[str] | None = None,
        source: str = "library",
        wake: socket.socket | None = None,
    ) -> None:
        if self.worker is not None and not self.stop.is_set():
            self.worker.request(trigger, roots, source)
        if wake is not None:
            # The main loop shows the next scan time at once (byte 0 is no signal).
            with contextlib.suppress(OSError):
                wake.send(b"\0")

    def command(
        self, command: str, wait: bool, gone: Callable[[], bool] = lambda: False
    ) -> dict[str, object]:
        """A control-socket command (runs on the socket's thread); `gone()` says
        whether a waiting asker hung up (then its work stops)."""
        worker = self.worker
        if worker is None or self.stop.is_set():
            return {"ok": False, "error": "tagd is stopping"}
        if command == "status":
            activity = worker.activity
            return {
                "ok": True,
                "message": f"{activity.state}"
                + (f" {activity.progress[0]}/{activity.progress[1]}" if activity.progress else "")
                + (" (paused)" if worker.paused and activity.state != "paused" else ""),
                "pid": os.getpid(),
                "state": activity.state,
                "progress": activity.progress,
                "paused": worker.paused,
            }
        if command in ("pause", "resume"):
            self.pause(command == "pause")
            return {"ok": True, "message": "paused" if worker.paused else "resumed"}
        settings = worker.generation.settings
        if command in ("stash", "tagme") and not settings.stash.enabled:
            return {"ok": False, "error": "Stash is not configured: set [stash] enabled = true"}
        source = {"scan": "library"}.get(command, command)
        # Asked for by someone (`tagd scan`, a Stash task): queued writes go now, backing
        # off or not, so a share fixed since is written at once. The retry timer and the
        # schedules keep the backoff.
        request = worker.request(f"control {command}", None, source, force=True)
        log.info("control socket: %s requested", command)
        if not wait:
            return {"ok": True, "message": f"{command} queued (pid {os.getpid()})"}
        while not all(event.wait(GONE_CHECK) for event in request.done):
            if gone():
                log.info("control socket: the asker of %s went away", command)
                worker.cancel(request)
                return {"ok": False, "error": f"{command} cancelled: the asker went away"}
        return {
            "ok": True,
            "message": "; ".join(request.summary) or f"{command} done",
            "failed": request.failed,
        }

    def pause(self, paused: bool) -> None:
        """Pause or resume scanning (the control socket, the API); kept across
        restarts, so a paused daemon stays paused until someone resumes it."""
        assert self.worker is not None
        self.worker.pause(paused)
        self._service["paused"] = paused
        self._save_service()

    # ------------------------------------------------------------ loop

    def _loop(self, wake: socket.socket) -> int:
        assert self.worker is not None
        ping = watchdog_interval()
        tick = min(TICK, ping) if ping else TICK
        last_ping = 0.0
        while True:
            ready, _, _ = select.select([wake], [], [], tick)
            if ready:
                for signum in self._drain(wake):
                    if not signum:
                        continue  # a wake-up, not a signal
                    if signum in (signal.SIGTERM, signal.SIGINT):
                        log.info("%s: stopping", signal.Signals(signum).name)
                        return 0
                    if signum == signal.SIGHUP:
                        self.reload()
                    elif signum == signal.SIGUSR1:
                        log.info("SIGUSR1: scanning now")
                        self._request("signal")
            if not self.worker.is_alive():
                log.error("the scan thread ended unexpectedly; exiting")
                return 1
            self._refresh()
            self._retry_due()
            now = time.monotonic()
            if ping and now - last_ping >= ping:
                stalled = self.worker.busy and now - self.worker.heartbeat > STALL
                if stalled:
                    log.error("no scan progress for %.0f s: not pinging the watchdog", STALL)
                else:
                    self.notifier.watchdog()
                    last_ping = now

    @staticmethod
    def _drain(wake: socket.socket) -> list[int]:
        try:
            return list(wake.recv(256))
        except BlockingIOError:
            return []

    def _retry_due(self) -> None:
        """Queue a delivery round when failed writes are due again and nothing runs
        (a scan writes what is due anyway)."""
        now = time.monotonic()
        if now - self._last_retry_check < RETRY_CHECK or self._meta is None:
            return
        self._last_retry_check = now
        assert self.worker is not None
        if self.worker.pending:
            return
        try:
            due = self._meta.next_due(enabled_sinks(self.worker.generation.settings))
        except Exception as exc:  # a busy catalog: look again next time
            log.debug("cannot read the outbox: %s", exc)
            return
        if due is not None and due <= time.time():
            self.worker.request("retry", None, "deliver")

    def _refresh(self) -> None:
        """Keep the next scan time and the idle STATUS= line current."""
        assert self.worker is not None and self.schedule is not None
        next_scan = self.schedule.next_run()
        if next_scan != self._next_scan or self._unsaved:
            self._next_scan = next_scan
            self._save_service()
        text = self._idle_text()
        self.worker.idle_status = text
        if text != self._status and not self.worker.busy:
            self._status = text
            self.notifier.status(text)

    def _idle_text(self) -> str:
        nxt = self.schedule.next_run() if self.schedule else None
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(nxt)) if nxt else "none"
        watching = "watching" if self.watcher and self.watcher.watched else "not watching"
        scans = self.worker.scans if self.worker else 0
        return f"idle, {watching}; next scan {when}; {scans} scans since start"

    def _save_service(self) -> None:
        if self._meta is None:
            return
        if threading.get_ident() != self._loop_thread:
            # A pause from the API or the control socket: the catalog connection is
            # the loop's, which saves it at its next round (within TICK).
            self._unsaved = True
            return
        self._unsaved = False
        self._service.update(
            schedule=self.schedule.text if self.schedule else "",
            next_scan=self._next_scan,
            watching=list(self.watcher.watched) if self.watcher else [],
        )
        try:
            put_json(self._meta, SERVICE, dict(self._service))
        except Exception as exc:  # a busy catalog must not stop the daemon
            log.debug("cannot record the service state: %s", exc)

    # ------------------------------------------------------------ reload

    def reload(self) -> bool:
        """Load the config file again; keep the running config when it is not usable."""
        assert self.worker is not None and self.schedule is not None
        self.notifier.reloading()
        try:
            settings = load_settings(self.config_path)
            generation = build_generation(self.engine, settings, self._generations + 1)
        except (ConfigError, ModelError, EngineError) as exc:
            log.error("SIGHUP: config not reloaded, running on the previous one: %s", exc)
            self._service["config_error"] = str(exc)
            self._save_service()
            self.notifier.ready(f"config reload failed, running on the previous one: {exc}")
            return False
        if state_dir(settings) != self.state_dir:
            log.warning(
                "daemon.state_dir changed: takes effect on restart; still using %s", self.state_dir
            )
        old = self.settings
        self.settings = settings
        self._generations = generation.number
        self.engine.log_level = settings.daemon.log_level
        self.engine.idle = settings.runtime.idle_unload
        logs.set_level(settings.daemon.log_level)
        if (settings.daemon.nice, settings.daemon.io_idle) != (old.daemon.nice, old.daemon.io_idle):
            lower_priority(settings.daemon.nice, settings.daemon.io_idle)
        # The scan thread takes the new config at its next job; the analysis process
        # builds its analyzers then and releases the old ones' models.
        self.worker.generation = generation
        if self.api_state is not None:
            self.api_state.settings = settings
            self.api_state.generation = generation.number
            self.api_state.known_shas = dict(generation.shas)
            if settings.api.listen != old.api.listen or settings.api.enabled != old.api.enabled:
                log.warning("[api] listen / enabled changed: takes effect on restart")
        self.schedule.set(settings.daemon.schedule)
        if self.tagme is not None:
            self.tagme.set(_tagme_schedule(settings))
        if self.watcher is not None:
            self.watcher.stop()
        self._start_watcher(settings)
        self._service.pop("config_error", None)
        self._service["config"] = str(settings.source or "built-in defaults")
        self._next_scan = self.schedule.next_run()
        self._save_service()
        log.info("SIGHUP: config reloaded from %s", settings.source or "built-in defaults")
        # Tag rules or roots may have changed: bring tags and sidecars in line.
        self.worker.request("reload")
        self.notifier.ready(self._idle_text())
        return True

    # ------------------------------------------------------------ stop

    def _shutdown(self) -> None:
        assert self.worker is not None
        timeout = self.settings.daemon.stop_timeout
        started = time.monotonic()
        # Leave a second of the budget for writing the sidecars already due. The
        # scan hears it first: it stops (or wakes from a pause) while the API
        # lets its requests in flight end.
        self.worker.finish(deadline=started + max(0.5, timeout - 1.0))
        self.notifier.stopping("stopping: finishing the batch in flight")
        if self.api is not None:
            self.api.stop(timeout=min(3.0, timeout / 2))
        for schedule in (self.schedule, self.tagme):
            if schedule is not None:
                schedule.shutdown()
        if self.watcher is not None:
            self.watcher.stop()
        if self.control is not None:
            self.control.close()
        self.worker.join(timeout=max(0.0, timeout - (time.monotonic() - started)))
        self._service["stopped"] = time.time()
        self._service["next_scan"] = None
        self._next_scan = None
        if self.worker.is_alive():
            log.warning(
                "the batch in flight did not finish within daemon.stop_timeout = %.0f s; "
                "exiting without it (it was not committed and is redone on the next start)",
                timeout,
            )
            self.engine.kill()
            self._save_service()
            logging.shutdown()
            sys.stderr.flush()
            self.lock.release()
            os._exit(0)
        self.engine.close(timeout=max(0.5, timeout - (time.monotonic() - started)))
        self._save_service()
        log.info("stopped after %.1f s", time.monotonic() - started)


def _tagme_schedule(settings: Settings) -> str:
    """[stash] tagme_schedule while Stash and workflow tags are on, else none."""
    stash = settings.stash
    return stash.tagme_schedule if stash.enabled and stash.workflow_prefix else ""


def run_service(config_path: str | None, settings: Settings) -> int:
    return Service(config_path, settings).run()
