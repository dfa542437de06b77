"""Many workers, one study: bayes / random search through a shared Optuna storage.

N processes started with the same `--study_storage` (a PostgreSQL URL across machines; SQLite
works on one machine) and `--study_name`, each with its own `--workdir`, cooperate on one sweep:

  * a worker asks `--batch` trials at a time from the study (the sampler sees every worker's
    results, and TPE's constant liar keeps it away from the others' running trials), trains them
    as one population and tells the results;
  * the budget is `--trials` fresh trials in the whole study; asking is serialized between
    workers (a PostgreSQL advisory lock), so together they train exactly that many, none twice;
  * every running trial carries an Optuna heartbeat (RDBStorage `heartbeat_interval`), sent by a
    thread of the worker; a worker killed with SIGKILL stops beating, its trials turn FAIL after
    `grace_period` (`optuna.storages.fail_stale_trials`, run by every worker before it asks; a
    trial whose worker died before its first heartbeat likewise, `_fail_unbeaten`) and Optuna's
    retry callback puts a copy of each in the queue (WAITING), which the next worker to
    ask trains. A worker with nothing left to ask waits for the others' running trials, so a
    retry always finds someone while any worker is alive.
  * a member's id is its trial number in the study: unique across workers, and its randomness is
    (seed, member id) as everywhere, so records of all workers merge (`sweeps.report --merge`).

The sampler is seeded by --seed and the process id: the workers must not propose the same
points, and with several workers the order of results is not reproducible anyway.

Opening the storage is the door for bad input: an unreachable or malformed URL, or a study that
exists with another search space or direction, raise ValueError (one line) in bounded time.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import threading
import time
import warnings
from typing import Any, Iterator, Mapping

import optuna

from sweeps import space as space_lib
from sweeps.strategies import common
from sweeps.strategies.base import OBJECTIVES, Report, Settings, Strategy, Trial

HEARTBEAT_ENV = "JAXNN_STUDY_HEARTBEAT"   # seconds between heartbeats (default 10)
GRACE_ENV = "JAXNN_STUDY_GRACE"           # seconds of silence before a trial is stale (default 60)
CONNECT_TIMEOUT = 10                      # seconds to reach the database
MAX_RETRY = 3                             # a trial that keeps dying is retried this often
SPACE_ATTR = "jaxnn_space"


def _first_line(error: BaseException) -> str:
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def redact(url: str) -> str:
  """The URL without its password (it goes into error messages)."""
  try:
    import sqlalchemy
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
  except Exception:  # noqa: BLE001 - unparsable: say so without echoing it whole
    return url.split("@")[-1]


def open_storage(url: str, *, heartbeat_interval: int | None = None,
                 grace_period: int | None = None) -> optuna.storages.RDBStorage:
  """An Optuna RDBStorage with heartbeats and retries of stale trials.

  Args:
    url: an SQLAlchemy URL (postgresql://user@host:port/db, sqlite:///path).
    heartbeat_interval, grace_period: seconds (default $JAXNN_STUDY_HEARTBEAT or 10,
      $JAXNN_STUDY_GRACE or 60).

  Raises:
    ValueError: one line, when the URL is malformed or the database cannot be reached in
      CONNECT_TIMEOUT seconds.
  """
  heartbeat_interval = heartbeat_interval or int(os.environ.get(HEARTBEAT_ENV, "10"))
  grace_period = grace_period or int(os.environ.get(GRACE_ENV, "60"))
  url = with_driver(url)
  retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
      optuna.storages.RetryFailedTrialCallback
  for attempt in range(3):
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # experimental/deprecated notes of the retry callback
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs(url), heartbeat_interval=heartbeat_interval,
            grace_period=grace_period, failed_trial_callback=retry(max_retry=MAX_RETRY))
    except Exception as e:  # noqa: BLE001 - sqlalchemy/psycopg2 errors of every kind
      # Workers that start together on an empty database race to create Optuna's tables:
      # the loser sees a duplicate and finds the tables there when it tries again.
      if attempt < 2 and any(s in str(e) for s in ("duplicate key", "already exists")):
        time.sleep(1.0 + attempt)
        continue
      raise ValueError(f"--study_storage: cannot open {redact(url)}: {_first_line(e)}") from None


def with_driver(url: str) -> str:
  """postgresql:// with the driver that is installed: SQLAlchemy 2.1 picks psycopg (3) for a
  bare postgresql://, the test extra installs psycopg2-binary."""
  import importlib.util
  if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None and \
      importlib.util.find_spec("psycopg2") is not None:
    return "postgresql+psycopg2://" + url[len("postgresql://"):]
  return url


def engine_kwargs(url: str) -> dict[str, Any]:
  """SQLAlchemy engine options: a bounded connect for PostgreSQL, patient writers for SQLite."""
  if url.startswith("postgresql"):
    return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}, "pool_pre_ping": True}
  if url.startswith("sqlite"):
    return {"connect_args": {"timeout": 60}}   # writers on one machine take turns
  return {}


def fingerprint(space: space_lib.Space, settings: Settings, kind: str) -> str:
  """What must agree between workers of one study: the space, the strategy and the objective."""
  return json.dumps({"space": repr(space.params), "strategy": kind,
                     "objective": settings.objective, "trials": settings.trials})


def _sampler(kind: str, settings: Settings) -> optuna.samplers.BaseSampler:
  from sweeps.strategies import bayes
  seed = int(hashlib.sha256(f"{settings.seed}/{os.getpid()}".encode()).hexdigest()[:8], 16)
  if kind == "random":
    return optuna.samplers.RandomSampler(seed=seed)
  return bayes.make_sampler(settings.sampler, seed)


def _is_retry(trial: optuna.trial.FrozenTrial) -> bool:
  return "failed_trial" in trial.system_attrs


class SharedStudyStrategy(Strategy):
  """bayes or random search whose trials live in a shared Optuna storage (see module doc)."""

  def __init__(self, space: space_lib.Space, settings: Settings, kind: str):
    super().__init__(space, settings)
    common.check_common(space, settings)
    common.require_int(settings, "trials", 1)
    common.require_int(settings, "batch", 1)
    if not settings.study_storage:
      raise ValueError("--study_name: a shared study needs --study_storage (e.g. "
                       "postgresql://user@host:5432/db)")
    self.name = kind
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    self.storage = open_storage(settings.study_storage)
    self.study = self._open_study(kind)
    self.running: dict[int, optuna.Trial] = {}   # member_id (= trial number) -> open trial
    self.complete = False
    self._lock = threading.Lock()
    self._beating = threading.Event()
    threading.Thread(target=self._heartbeats, name="jaxnn-study-heartbeat", daemon=True).start()

  def _open_study(self, kind: str) -> optuna.Study:
    name, url = self.settings.study_name, redact(self.settings.study_storage)
    mine = fingerprint(self.space, self.settings, kind)
    direction = OBJECTIVES[self.settings.objective]
    try:
      study = optuna.create_study(storage=self.storage, study_name=name, direction=direction,
                                  sampler=_sampler(kind, self.settings), load_if_exists=True)
      with self._ask_lock():   # the first worker writes the fingerprint, the others compare
        theirs = study.user_attrs.get(SPACE_ATTR)
        if theirs is None:
          study.set_user_attr(SPACE_ATTR, mine)
    except ValueError as e:   # e.g. an existing study with the other direction
      raise ValueError(f"--study_name: study {name!r} in {url}: {_first_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - the database went away between calls
      raise ValueError(f"--study_storage: {url}: {_first_line(e)}") from None
    if theirs is not None and theirs != mine:
      diff = [k for k, v in json.loads(theirs).items() if json.loads(mine).get(k) != v]
      raise ValueError(f"--study_name: study {name!r} in {url} exists with another "
                       f"{', '.join(diff)}; use another --study_name")
    if study.direction.name.lower() != direction:
      raise ValueError(f"--study_name: study {name!r} in {url} exists with direction "
                       f"{study.direction.name.lower()}, --objective asks {direction}")
    return study

  @contextlib.contextmanager
  def _ask_lock(self) -> Iterator[None]:
    """Serializes asking between workers: counting the budget and creating trials is one step.
    PostgreSQL: a session advisory lock (released by the server if the worker dies). Other
    databases: none (one machine, SQLite serializes writers; a race may overshoot the budget)."""
    if self.storage.engine.dialect.name != "postgresql":
      yield
      return
    import sqlalchemy
    key = int(hashlib.sha256(self.settings.study_name.encode()).hexdigest()[:15], 16)
    with self.storage.engine.connect() as connection:
      connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
      try:
        yield
      finally:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        connection.commit()

  # ------------------------------------------------------------------------- asking

  def ask(self) -> list[Trial]:
    if self.running or self.complete:
      return []
    while True:
      with self._ask_lock():
        optuna.storages.fail_stale_trials(self.study)   # a dead worker's trials -> retries
        self._fail_unbeaten(self.study.get_trials(deepcopy=False))
        trials = self.study.get_trials(deepcopy=False)
        states = optuna.trial.TrialState
        fresh = sum(not _is_retry(t) for t in trials)
        waiting = sum(t.state == states.WAITING for t in trials)
        count = min(self.settings.batch, waiting + max(0, self.settings.trials - fresh))
        if count:
          return [self._start(self.study.ask()) for _ in range(count)]
        if not any(t.state == states.RUNNING for t in trials):
          self.complete = True
          return []
      # Others are still training: one of their trials may die and come back as a retry.
      time.sleep(self.storage.get_heartbeat_interval() or 10)

  def _start(self, optuna_trial: optuna.Trial) -> Trial:
    member_id = optuna_trial.number
    config = optuna_trial.user_attrs.get("config")   # a retry carries the dead trial's config
    if config is None:
      config = self.space.sample(_suggest(optuna_trial))
      epochs = common.planned_epochs(config, self.settings)
      config = common.trial_config(config, self.settings, epochs)
      optuna_trial.set_user_attr("config", config)
    optuna_trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")
    self.storage.record_heartbeat(optuna_trial._trial_id)
    # Set after the first heartbeat: its absence marks a trial that never beat (_fail_unbeaten).
    optuna_trial.set_user_attr("member_id", member_id)
    with self._lock:
      self.running[member_id] = optuna_trial
    return Trial(member_id, dict(config), int(config["epochs"]))

  def _fail_unbeaten(self, trials: list[optuna.trial.FrozenTrial]) -> None:
    """Fails (and so retries) the trials of a worker killed between creating a trial and its
    first heartbeat. Optuna's `fail_stale_trials` looks only at trials that have a heartbeat,
    so such a trial would stay RUNNING forever and every other worker would wait for it.
    `_start` sets `member_id` (= the trial's own number; a retry carries its dead original's)
    after the first heartbeat: a RUNNING trial without it, started longer than the grace period
    ago (this host's clock against the creator's: the grace period covers their skew), never
    beat."""
    now = datetime.datetime.now()
    grace = datetime.timedelta(seconds=self.storage.grace_period or 60)
    retry = self.storage.get_heartbeat_stale_trial_callback()
    for trial in trials:
      if trial.state != optuna.trial.TrialState.RUNNING or \
          trial.user_attrs.get("member_id") == trial.number or \
          trial.datetime_start is None or now - trial.datetime_start < grace:
        continue
      try:
        if not self.storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
          continue
      except optuna.exceptions.UpdateFinishedTrialError:
        continue   # another worker got there first
      if retry is not None:
        retry(self.study, self.storage.get_trial(trial._trial_id))

  def _heartbeats(self) -> None:
    """Keeps this worker's running trials alive in the storage while it trains them."""
    interval = self.storage.get_heartbeat_interval() or 10
    while True:
      time.sleep(interval)
      with self._lock:
        ids = [t._trial_id for t in self.running.values()]
      for trial_id in ids:
        try:
          self.storage.record_heartbeat(trial_id)
        except Exception:  # noqa: BLE001 - a lost connection: the next beat retries
          pass

  # ------------------------------------------------------------------------- telling

  def tell(self, report: Report) -> None:
    with self._lock:
      optuna_trial = self.running.pop(report.member_id, None)
    if optuna_trial is None:
      raise ValueError(f"member_id: {report.member_id} is not a running trial of this study")
    from sweeps.strategies import bayes
    try:
      bayes.tell_study(self.study, optuna_trial, report, self.settings.objective)
    except (ValueError, RuntimeError):
      # Already finished: declared stale while this worker was unreachable longer than the
      # grace period, and retried by another. The retry's result is the study's.
      pass

  def done(self) -> bool:
    return self.complete

  def state_dict(self) -> dict[str, Any]:
    with self._lock:
      running = {str(k): t._trial_id for k, t in self.running.items()}
    return {"running": running, "complete": self.complete}

  def load_state_dict(self, state: Mapping[str, Any]) -> None:
    # A resumed worker goes on with its trials (their heartbeats restart now); one declared
    # stale meanwhile was retried elsewhere and its result here is ignored by tell().
    with self._lock:
      self.running = {int(k): optuna.Trial(self.study, int(trial_id))
                      for k, trial_id in state["running"].items()}
    self.complete = bool(state["complete"])


def _suggest(optuna_trial):
  from sweeps.strategies.bayes import OptunaSuggest
  return OptunaSuggest(optuna_trial)
