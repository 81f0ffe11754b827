"""Carry out reconcile decisions on this machine: the I/O half of the controller.

:class:`ExperimentRunner` starts (or dials) the suggestion and DB services, then loops:
:func:`~katib.controller.reconcile.reconcile` decides, the runner asks for suggestions, starts
trial processes through :class:`~katib.controller.local.LocalBackend`, turns exits into trial
conditions with observations read back from the DB service, and persists every change in the
results directory before acting on it.

Resume: trials that were created or running when a previous controller died are re-run with the
same name and assignments (their leftover processes are killed and their observation rows
deleted first); finished trials are never re-run. A Ctrl-C stops running trials and leaves them
to be re-run the same way. An experiment that failed because GetSuggestions failed (after the
client's retries of transient errors) is resumed by a rerun too, unlike one that failed because
of its trials.
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from katib.api.errors import InvalidArgument, KatibError
from katib.controller import reconcile as rec
from katib.controller import trials as tr
from katib.controller.local import Finished, LocalBackend, kill_leftover
from katib.controller.services import Endpoints, ObservationLog, SuggestionClient, start_local
from katib.controller.spec import Experiment
from katib.controller.store import ResultsStore
from katib.controller.trials import UNAVAILABLE, LogEntry, TrialCondition, TrialRecord

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
_COUNT_FIELDS = ("parallelTrialCount", "maxTrialCount", "maxFailedTrialCount")
_NAME_ALPHABET = string.ascii_lowercase + string.digits
Progress = Callable[[rec.Decision, list[TrialRecord]], None]


@dataclass(frozen=True)
class RunResult:
    """How a run ended: the final decision, every trial, and a note for the user."""

    decision: rec.Decision
    trials: list[TrialRecord]
    note: str = ""

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
    ) -> None:
        self.spec = spec
        self.raw = raw
        self.results_dir = results_dir
        self.experiment_dir = experiment_dir
        self.addresses = (suggestion_address, db_address)
        self.on_progress = on_progress
        self.trials: dict[str, TrialRecord] = {}
        self.state = rec.SuggestionState()
        self.overlay: dict[str, str] = {}
        self.status: dict[str, Any] = {}
        self._dirty: dict[str, TrialRecord] = {}
        self._status_dirty = False

    def run(self) -> RunResult:
        """Run (or resume) the experiment; ``KeyboardInterrupt`` stops it resumably."""
        with ResultsStore(self.results_dir) as store:
            self.store = store
            note = self._load()
            if note:
                return self._result(note)
            endpoints = start_local(self.results_dir, *self.addresses)
            try:
                return self._serve(endpoints)
            finally:
                endpoints.stop()

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

    def _recover(self, db: ObservationLog) -> None:
        """Re-queue trials that a previous controller left created or running."""
        for trial in list(self.trials.values()):
            if trial.condition.completed:
                continue
            kill_leftover(trial.extra)
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
        client = SuggestionClient(endpoints.suggestion)
        backend = LocalBackend(
            self.spec,
            self.results_dir,
            db.report,
            env={"KATIB_DB_MANAGER_ADDRESS": endpoints.db},
            experiment_dir=self.experiment_dir,
            reset=db.delete,
        )
        try:
            db.wait_ready()
            self._recover(db)
            if not self.trials:
                client.validate(self.spec)
            return self._loop(client, db, backend)
        except KeyboardInterrupt:
            self._interrupt(backend)
            raise
        finally:
            backend.close()
            client.close()
            db.close()

    def _loop(
        self, client: SuggestionClient, db: ObservationLog, backend: LocalBackend
    ) -> RunResult:
        while True:
            decision = rec.reconcile(self.spec, list(self.trials.values()), self.state)
            self._save_status(decision)
            if self.on_progress is not None:
                self.on_progress(decision, list(self.trials.values()))
            if decision.completed:
                for done in backend.stop(list(decision.stop)):
                    self._save(
                        tr.kill(
                            self.trials[done.name],
                            "TrialKilled",
                            f"Stopped because the experiment {decision.condition}",
                            now(),
                        )
                    )
                self._flush()
                trials = list(self.trials.values())
                final = replace(decision, counts=rec.Counts.of(trials), stop=())
                return RunResult(decision=final, trials=trials)
            if decision.request and self._suggest(client, decision.request):
                continue
            for name in decision.start:
                self._start(backend, self.trials[name])
            self._flush()
            for done in backend.poll(POLL_SECONDS):
                self._complete(db, done)
            self._flush()

    def _suggest(self, client: SuggestionClient, count: int) -> int:
        """Ask for ``count`` trials and record them as Created; returns how many came."""
        try:
            reply = client.get(self.spec, list(self.trials.values()), count, self.overlay)
        except KatibError as exc:
            logger.error("%s", exc)
            self.state = replace(self.state, failed_message=str(exc))
            self.store.put(suggestion=self._suggestion_record())
            return 0
        for setting in reply.algorithm.algorithm_settings:
            self.overlay[setting.name] = setting.value
        records = []
        for item in reply.parameter_assignments:
            name = item.trial_name
            if not name or name in self.trials:
                name = self._new_name()
            record = TrialRecord(
                name=name,
                index=len(self.trials),
                assignments=tuple((a.name, a.value) for a in item.assignments),
                labels=tuple(sorted(item.labels.items())),
                message="Trial is created",
            )
            self._save(record)
            records.append(record)
        self.state = rec.after_suggestions(self.state, count, len(records))
        self._flush(suggestion=self._suggestion_record())  # recorded before any trial starts
        return len(records)

    def _start(self, backend: LocalBackend, trial: TrialRecord) -> None:
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

    def _complete(self, db: ObservationLog, done: Finished) -> None:
        trial = self.trials[done.name]
        summary = done.summary
        if summary is None or db.may_hold_pushes(trial.name):
            # Rows the trial reported itself: the DB holds the whole record.
            summary = tr.ObservationSummary(self.spec.objective)
            summary.add(db.entries(trial.name))
        objective = self.spec.objective.objective_metric_name
        if objective not in summary.names:
            missing = LogEntry(None, objective, UNAVAILABLE)
            db.report(trial.name, [missing])
            summary.add([missing])
        observation = summary.observation()
        self._save(tr.finish(trial, done.exit_code, observation, self.spec.objective, now()))

    def _interrupt(self, backend: LocalBackend) -> None:
        """Stop running trials and leave them to be re-run on resume."""
        for done in backend.stop(backend.running):
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

    def _new_name(self) -> str:
        while True:
            suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(8))
            name = f"{self.spec.name}-{suffix}"
            if name not in self.trials:
                return name

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
