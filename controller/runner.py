"""Carry out reconcile decisions: the I/O half of the controller.

:class:`ExperimentRunner` starts (or dials) the suggestion and DB services, then loops:
:func:`~katib.controller.reconcile.reconcile` decides, the runner asks for suggestions (checked
by :mod:`~katib.controller.replies` before anything starts), fetches early-stopping rules for
trials about to start (and again whenever a trial ends, for the trials still running), starts
and stops trials through a :class:`~katib.controller.backend.Backend` (local processes unless
another is given), turns what the backend reports into trial conditions, and persists every
change in the results directory before acting on it.

Signals are data (:class:`~katib.api.signals.Interrupts`): the loop checks for one at
every step and wakes from its poll when one arrives; it then stops the running trials and
returns a result with ``interrupted`` set. A trial that had already exited when the experiment
ended (or was interrupted) keeps its own result; only trials still running are stopped.

Resume: trials that were created or running when a previous controller died are re-run with the
same name and assignments (their leftover processes are killed and their observation rows
deleted first); finished trials are never re-run. A Ctrl-C stops running trials and leaves them
to be re-run the same way. An experiment that failed because GetSuggestions failed (after the
client's retries of transient errors) is resumed by a rerun too, unlike one that failed because
of its trials.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from katib.api.errors import InvalidArgument, KatibError
from katib.api.signals import Interrupts
from katib.controller import reconcile as rec
from katib.controller import trials as tr
from katib.controller.backend import Backend, BackendFactory, Finished
from katib.controller.collector import Collector
from katib.controller.earlystop import EarlyStopping
from katib.controller.replies import check_reply, resource_parameter
from katib.controller.services import Endpoints, ObservationLog, Suggestions, start_local
from katib.controller.spec import Experiment
from katib.controller.store import ResultsStore
from katib.controller.trials import TrialCondition, TrialRecord
from katib.earlystopping.rules import RuleSet

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
_COUNT_FIELDS = ("parallelTrialCount", "maxTrialCount", "maxFailedTrialCount")
Progress = Callable[[rec.Decision, list[TrialRecord]], None]


@dataclass(frozen=True)
class RunResult:
    """How a run ended: the final decision, every trial, and a note for the user."""

    decision: rec.Decision
    trials: list[TrialRecord]
    note: str = ""
    #: The signal that stopped the run (SIGINT, SIGTERM), if one did.
    interrupted: int | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the experiment ended Succeeded."""
        return self.decision.condition is rec.Condition.SUCCEEDED


def now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class ExperimentRunner:
    """Run one experiment to completion in ``results_dir``, resuming what is already there."""

    def __init__(
        self,
        spec: Experiment,
        raw: dict[str, Any],
        results_dir: Path,
        experiment_dir: Path | None = None,
        suggestion_address: str | None = None,
        db_address: str | None = None,
        on_progress: Progress | None = None,
        early_stopping_address: str | None = None,
        interrupts: Interrupts | None = None,
        backend: BackendFactory | None = None,
    ) -> None:
        self.spec = spec
        self.raw = raw
        self.results_dir = results_dir
        self.experiment_dir = experiment_dir
        self.addresses = (suggestion_address, db_address)
        self.early_stopping_address = early_stopping_address
        self.on_progress = on_progress
        self._own_interrupts = interrupts is None
        self.interrupts = interrupts or Interrupts()  # never installed: it never fires
        self.db_address = ""
        self.backend_factory = backend or _local_backend()
        self.early: EarlyStopping | None = None
        self.collector: Collector | None = None
        self.trials: dict[str, TrialRecord] = {}
        self.state = rec.SuggestionState()
        self.overlay: dict[str, str] = {}
        self.status: dict[str, Any] = {}
        self._dirty: dict[str, TrialRecord] = {}
        self._status_dirty = False

    def run(self) -> RunResult:
        """Run (or resume) the experiment; ``KeyboardInterrupt`` stops it resumably.

        ``InvalidArgument`` before anything is written if the backend cannot run it.
        """
        problems = self.backend_factory.capabilities.problems(self.spec)
        if problems:
            raise InvalidArgument(problems)
        with ResultsStore(self.results_dir) as store:
            self.store = store
            note = self._load()
            if note:
                return self._result(note)
            endpoints = start_local(
                self.results_dir,
                *self.addresses,
                early_stopping_address=self.early_stopping_address,
                early_stopping=self.spec.early_stopping is not None,
            )
            try:
                return self._serve(endpoints)
            finally:
                endpoints.stop()
                if self._own_interrupts:
                    self.interrupts.uninstall()

    # -- loading and resuming ------------------------------------------------------------------

    def _load(self) -> str:
        """Load earlier records; a non-empty note means there is nothing to run."""
        stored = self.store.get("experiment")
        if stored is None or not self.store.trials():  # nothing ran yet: start afresh
            self.status = {
                "condition": rec.Condition.CREATED,
                "reason": rec.Reason.CREATED,
                "start_time": now().isoformat(),
            }
            self.store.put(experiment=self.raw, status=self.status, suggestion={})
            return ""
        _check_same_experiment(stored, self.raw, self.results_dir)
        self.trials = {t.name: t for t in self.store.trials()}
        self.status = self.store.get("status") or {}
        saved = self.store.get("suggestion") or {}
        self.state = rec.SuggestionState(
            exhausted=bool(saved.get("exhausted")), failed_message=saved.get("failed_message", "")
        )
        self.overlay = dict(saved.get("settings") or {})
        condition = rec.Condition(self.status.get("condition", rec.Condition.CREATED))
        if condition is rec.Condition.FAILED and self.state.failed_message:
            # the suggestion service failed, not the experiment's trials: try again
            logger.info(
                "resuming %s after a suggestion service error: %s",
                self.spec.name,
                self.state.failed_message,
            )
            self.state = replace(self.state, failed_message="")
            self.status.update(
                condition=rec.Condition.RESTARTING,
                reason=rec.Reason.RESTARTING,
                completion_time=None,
            )
            self.store.put(suggestion=self._suggestion_record())
        elif condition in (rec.Condition.SUCCEEDED, rec.Condition.FAILED):
            reason = self.status.get("reason", "")
            ran = sum(1 for t in self.trials.values() if t.condition.completed)
            if not rec.can_restart(self.spec, condition, reason, ran):
                return (
                    f"experiment {self.spec.name!r} already completed ({condition}, "
                    f"{reason}); resumePolicy {self.spec.resume_policy} does not restart it"
                )
            self.status.update(
                condition=rec.Condition.RESTARTING,
                reason=rec.Reason.RESTARTING,
                completion_time=None,
            )
            logger.info(
                "restarting %s with maxTrialCount %s", self.spec.name, self.spec.max_trial_count
            )
        self.store.put(experiment=self.raw, status=self.status)
        return ""

    def _recover(self, db: ObservationLog, backend: Backend) -> None:
        """Re-queue trials that a previous controller left created or running."""
        for trial in list(self.trials.values()):
            if trial.condition.completed:
                continue
            backend.recover(trial)
            db.delete(trial.name)
            logger.info("trial %s was interrupted; it will run again", trial.name)
            self._save(
                replace(
                    trial,
                    condition=TrialCondition.CREATED,
                    reason="TrialRestarted",
                    message="Re-run after the controller was interrupted",
                    extra={},
                )
            )
        self._flush()

    # -- the loop --------------------------------------------------------------------------------

    def _serve(self, endpoints: Endpoints) -> RunResult:
        db = ObservationLog(endpoints.db, endpoints.pushes)
        cancelled = self._interrupted
        client = Suggestions(endpoints.suggestion, cancelled)
        if endpoints.early_stopping:
            self.early = EarlyStopping(endpoints.early_stopping, cancelled)
        self.db_address = endpoints.db
        self.collector = Collector(self.spec, db)
        backend = self.backend_factory(
            self.spec,
            self.results_dir,
            self.collector,
            env={"KATIB_DB_MANAGER_ADDRESS": endpoints.db},
            experiment_dir=self.experiment_dir,
        )
        try:
            db.wait_ready()
            self._recover(db, backend)
            if not self.trials:
                client.validate(self.spec)
                if self.early is not None:
                    self.early.validate(self.spec)
            return self._loop(client, backend)
        except KeyboardInterrupt:
            self._interrupt(backend)
            raise
        finally:
            backend.close()
            client.close()
            if self.early is not None:
                self.early.close()
            db.close()

    def _interrupted(self) -> bool:
        return self.interrupts.received is not None

    def _loop(self, client: Suggestions, backend: Backend) -> RunResult:
        while True:
            if self._interrupted():
                return self._interrupt(backend)
            decision = rec.reconcile(self.spec, list(self.trials.values()), self.state)
            self._save_status(decision)
            if self.on_progress is not None:
                self.on_progress(decision, list(self.trials.values()))
            if decision.completed:
                return self._end(backend, decision)
            if decision.fetch_rules:
                self._fetch_rules(decision.fetch_rules)
                continue
            if decision.request and self._suggest(client, decision.request):
                continue
            for name in decision.start:
                self._start(backend, self.trials[name])
            self._flush()
            ended = backend.poll(POLL_SECONDS, wake=self.interrupts.fileno())
            for done in ended:
                self._complete(backend, done)
            if ended:
                self._refresh_rules()
            self._flush()

    def _end(self, backend: Backend, decision: rec.Decision) -> RunResult:
        """Stop the trials still running; a trial that already exited keeps its result."""
        for done in backend.stop(list(decision.stop)):
            if done.stopped:
                self._save(
                    tr.kill(
                        self.trials[done.name],
                        "TrialKilled",
                        f"Stopped because the experiment {decision.condition}",
                        now(),
                        observation=backend.collect(done),
                        exit_code=done.exit_code,
                    )
                )
            else:
                self._complete(backend, done)
        trials = list(self.trials.values())
        best = rec.best_trial(self.spec, trials)
        final = replace(
            decision,
            counts=rec.Counts.of(trials),
            best_trial=best.name if best else None,
            stop=(),
        )
        self._save_status(final)
        self._flush()
        return RunResult(decision=final, trials=trials)

    def _suggest(self, client: Suggestions, count: int) -> int:
        """Ask for ``count`` trials and record them as Created; returns how many came.

        The reply is checked before anything is recorded: a value outside the space fails the
        experiment like any suggestion service error; a bad trial name is replaced.
        """
        before = rec.Counts.of(list(self.trials.values()))
        try:
            reply = client.get(self.spec, list(self.trials.values()), count, self.overlay)
            suggested = check_reply(
                self.spec,
                reply,
                self.trials.keys(),
                self._new_name,
                resource_parameter(self.spec, {**self.overlay, **_settings(reply)}),
            )
        except KatibError as exc:
            self._suggestion_failed(str(exc))
            return 0
        self.overlay.update(_settings(reply))
        for item in suggested:
            self._save(
                TrialRecord(
                    name=item.name,
                    index=len(self.trials),
                    assignments=item.assignments,
                    labels=item.labels,
                    message="Trial is created",
                )
            )
        self.state = rec.after_suggestions(self.state, count, len(suggested), before)
        self._flush(suggestion=self._suggestion_record())  # recorded before any trial starts
        return len(suggested)

    def _suggestion_failed(self, message: str) -> None:
        logger.error("%s", message)
        self.state = replace(self.state, failed_message=message)
        self.store.put(suggestion=self._suggestion_record())

    def _fetch_rules(self, names: tuple[str, ...]) -> None:
        """GetEarlyStoppingRules for trials about to start; the rules go on their records."""
        if self.early is None:  # cannot happen: start_local serves one for earlyStopping
            raise InvalidArgument("spec.earlyStopping: no early-stopping service")
        try:
            rules = self.early.rules(
                self.spec, list(self.trials.values()), self.overlay, self.db_address
            )
        except KatibError as exc:
            self._suggestion_failed(f"early stopping: {exc}")
            return
        for name in names:
            self._save(self._with_rules(self.trials[name], rules))
        self._flush()

    def _refresh_rules(self) -> None:
        """A trial ended: ask for rules from the newer history and give them to every trial
        that already has rules and has not ended (running ones evaluate them from their next
        row on). A failure keeps the old rules."""
        if self.early is None or self.collector is None:
            return
        waiting = [
            t
            for t in self.trials.values()
            if not t.condition.completed and t.stop_rules is not None
        ]
        if not waiting:
            return
        try:
            rules = self.early.rules(
                self.spec, list(self.trials.values()), self.overlay, self.db_address
            )
        except KatibError as exc:
            logger.warning("early stopping: keeping the rules of running trials: %s", exc)
            return
        for trial in waiting:
            self._save(self._with_rules(trial, rules))
            if trial.condition is TrialCondition.RUNNING:
                self.collector.refresh_rules(trial.name, rules)

    @staticmethod
    def _with_rules(trial: TrialRecord, rules: RuleSet) -> TrialRecord:
        return replace(trial, stop_rules=rules.rules, stop_semantics=rules.semantics)

    def _start(self, backend: Backend, trial: TrialRecord) -> None:
        try:
            info = backend.start(trial)
        except (OSError, KeyError, ValueError) as exc:
            moment = now()
            self._save(
                replace(
                    tr.start(trial, moment),
                    condition=TrialCondition.FAILED,
                    reason="TrialFailed",
                    message=f"cannot start the trial: {exc}",
                    completion_time=moment,
                )
            )
            return
        self._save(replace(tr.start(trial, now()), extra=info))

    def _complete(self, backend: Backend, done: Finished) -> None:
        trial = self.trials[done.name]
        observation = backend.collect(done)
        if done.early_stopped:
            self._save(tr.early_stop(trial, done.exit_code, observation, now()))
            if self.early is not None:
                self.early.set_trial_status(trial.name)
            return
        self._save(tr.finish(trial, done.exit_code, observation, self.spec.objective, now()))

    def _interrupt(self, backend: Backend) -> RunResult:
        """Stop running trials and leave them to be re-run on resume; a trial that had
        already exited keeps its result."""
        for done in backend.stop(backend.running, hurry=lambda: self.interrupts.count > 1):
            if not done.stopped:
                self._complete(backend, done)
                continue
            trial = self.trials[done.name]
            self._save(
                replace(
                    trial,
                    condition=TrialCondition.CREATED,
                    reason="TrialRestarted",
                    message="Interrupted; re-run on resume",
                    extra={},
                )
            )
        self._flush()
        logger.info("interrupted; run again with the same results directory to resume")
        result = self._result()
        return replace(result, interrupted=self.interrupts.received)

    # -- records ---------------------------------------------------------------------------------

    def _save(self, trial: TrialRecord) -> None:
        """Record a change in memory; :meth:`_flush` persists the batch in one transaction."""
        self.trials[trial.name] = trial
        self._dirty[trial.name] = trial

    def _flush(self, **values: Any) -> None:
        if self._status_dirty:
            values["status"] = self.status
        if self._dirty or values:
            self.store.save(list(self._dirty.values()), **values)
        self._dirty.clear()
        self._status_dirty = False

    def _save_status(self, decision: rec.Decision) -> None:
        status = dict(
            self.status,
            condition=decision.condition,
            reason=decision.reason,
            message=decision.message,
            best_trial=decision.best_trial,
        )
        if decision.completed and not status.get("completion_time"):
            status["completion_time"] = now().isoformat()
        if status != self.status:
            self.status = status
            self._status_dirty = True
            if decision.completed:
                self._flush()

    def _suggestion_record(self) -> dict[str, Any]:
        return {
            "exhausted": self.state.exhausted,
            "failed_message": self.state.failed_message,
            "settings": self.overlay,
        }

    def _new_name(self, avoid: set[str] | None = None) -> str:
        return tr.new_trial_name(self.spec.name, self.trials, avoid or ())

    def _result(self, note: str = "") -> RunResult:
        trials = list(self.trials.values())
        decision = rec.reconcile(self.spec, trials, self.state)
        if note:  # completed earlier: report the stored outcome, not a fresh evaluation
            decision = replace(
                decision,
                condition=rec.Condition(self.status["condition"]),
                reason=rec.Reason(self.status["reason"]),
                message=self.status.get("message", ""),
                start=(),
                request=0,
            )
        return RunResult(decision=replace(decision, stop=()), trials=trials, note=note)


def _settings(reply: Any) -> dict[str, str]:
    """The algorithm settings a GetSuggestions reply overlays."""
    return {s.name: s.value for s in reply.algorithm.algorithm_settings}


def _local_backend() -> BackendFactory:
    from katib.controller.local import LocalBackend

    return LocalBackend


def _check_same_experiment(stored: dict[str, Any], raw: dict[str, Any], where: Path) -> None:
    """Only the trial counts may change between runs on one results directory (6.2 rule 4)."""

    def core(doc: dict[str, Any]) -> Any:
        spec = {k: v for k, v in (doc.get("spec") or {}).items() if k not in _COUNT_FIELDS}
        return (doc.get("metadata", {}).get("name"), spec)

    if core(stored) != core(raw):
        raise InvalidArgument(
            f"{where} holds a different experiment; only spec.parallelTrialCount, "
            "spec.maxTrialCount and spec.maxFailedTrialCount may change between runs. "
            "Use another --results directory for a new experiment"
        )
