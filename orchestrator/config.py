"""The campaign file: schema, validation and loading. Validated once, at the edge (STYLE.md, convention 3).

A campaign file is YAML loaded with ``safe_load`` into the frozen models below; unknown keys are errors.
:func:`load_campaign` is the one entry point: it reads the file, applies ``--set`` overrides, validates,
resolves the search space and checks everything that can be checked before anything starts (workload
name, its parameters and metrics, the data file). Every problem becomes a one-line
:class:`~trainables.errors.HpoError` naming the file, the line, the field and the fix. The reference is
``docs/campaign-file.md``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.overrides import apply_overrides
from orchestrator.samplers import SAMPLERS, TPE, SamplerConfig
from orchestrator.schedulers import FIFO, PBT, SCHEDULERS, SchedulerConfig
from orchestrator.space import SearchSpace, parse_space
from orchestrator.yamlio import LoadedYaml, format_loc, load_yaml
from trainables.data.spec import DataConfig
from trainables.errors import DataError, HpoError
from trainables.registry import check_workload

_SQLITE_FILE = re.compile(r"(?P<prefix>sqlite[\w+]*:///)(?P<path>[^?]*)(?P<rest>\?.*)?", re.IGNORECASE)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")  # fullmatch: "$" would let a trailing newline in
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")
#: Prefix of the metrics and tags the framework itself reports (``hpo.epoch_time_s``, ``hpo.campaign``).
RESERVED_PREFIX = "hpo."


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot name a campaign, or ``None`` when it can.

    The one rule for the campaign file's ``name`` and every command's ``NAME`` argument
    (:meth:`orchestrator.state.CampaignDir.of`): a name is a directory under the campaigns directory and an
    MLflow experiment, so it has no path separator and is never ``.`` or ``..``.
    """
    if len(value) > 128:
        return f"must be at most 128 characters (it names a directory and an MLflow experiment), but has {len(value)}"
    if _NAME.fullmatch(value):
        return None
    return (f"must be letters, digits, '_', '-' or '.', starting with a letter or digit (it names a directory and "
            f"an MLflow experiment), but got {value!r}")


def absolute_location(value: str) -> str:
    """A local path, or a local ``file:`` or SQLite URI, made absolute against the current directory; any other
    URI (``s3://``, ``http://``, ``postgresql://``) unchanged.

    Relative paths in a campaign file are relative to the directory ``hpo launch`` runs in. Resolving them once,
    at load, keeps them pointing there for the trials (whose working directory is Ray's) and, through the
    stored ``campaign.yaml``, for ``hpo resume`` and ``hpo extend`` from any other directory.

    >>> absolute_location("sqlite:///mlflow.db")  # doctest: +SKIP
    'sqlite:////home/me/project/mlflow.db'
    """
    scheme = urlsplit(value).scheme.lower()
    if len(scheme) <= 1:  # no scheme (a path); one letter would be a Windows drive
        return str(Path(value).expanduser().absolute())
    if scheme == "file":
        path = value[len("file:"):].removeprefix("//")
        return value if path.startswith("/") else f"file://{Path(path).expanduser().absolute()}"
    match = _SQLITE_FILE.fullmatch(value)
    if match and match["path"] and not match["path"].startswith(("/", ":memory:")):
        return f"{match['prefix']}{Path(match['path']).expanduser().absolute()}{match['rest'] or ''}"
    return value


#: Where a campaign file names something on disk (a path, or a local store URI): made absolute at load, and
#: written back that way into :attr:`CampaignSpec.raw`, hence into the stored ``campaign.yaml``.
PATH_FIELDS: tuple[tuple[str, ...], ...] = (("workload", "data", "path"), ("search", "space"), ("storage",),
                                            ("tracking", "uri"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration(value: Any) -> float:
    """``"1h30m"``, ``"90s"``, ``"2d"`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '2h', '45m', '1h30m' or seconds, but got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match or not any(match.groups()):
            raise ValueError(f"expected a duration like '2h', '45m', '1h30m' or seconds, but got {value!r}")
        d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, but got {value!r}")
    return seconds


class WorkloadSection(_Strict):
    """What to train: a registered workload, its data and its fixed hyperparameters."""

    name: str = Field(description="built-in (lhc_cnn, cosmoflow, cosmogan), entry point, or dotted module path")
    data: DataConfig
    params: dict[str, Any] = Field(default_factory=dict, description="fixed hyperparameters for every trial")

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            check_workload(value)
        except HpoError as exc:
            raise ValueError(exc.message) from None
        return value


class Objective(_Strict):
    """One metric to optimise, as reported by the workload every epoch."""

    metric: str
    mode: Literal["min", "max"]


class SearchSection(_Strict):
    """How to search: space, sampler (Optuna), scheduler (Ray Tune) and objective(s)."""

    space: dict[str, Any] | str = Field(description="mapping of parameters, or a path to a search-space YAML file")
    sampler: SamplerConfig = Field(default_factory=lambda: TPE(name="tpe"))
    scheduler: SchedulerConfig = Field(default_factory=lambda: FIFO(name="fifo"))
    objective: list[Objective] = Field(min_length=1)

    @field_validator("space")
    @classmethod
    def _space_file_absolute(cls, value: dict[str, Any] | str) -> dict[str, Any] | str:
        return absolute_location(value) if isinstance(value, str) else value

    @field_validator("sampler", mode="before")
    @classmethod
    def _sampler_name(cls, value: Any) -> Any:
        return _named(value, SAMPLERS, "sampler")

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler_name(cls, value: Any) -> Any:
        return _named(value, SCHEDULERS, "scheduler")

    @field_validator("objective", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, Mapping) else value

    @model_validator(mode="after")
    def _objectives_fit(self) -> SearchSection:
        n = len(self.objective)
        names = [o.metric for o in self.objective]
        if len(set(names)) != n:
            raise ValueError(f"objective lists a metric twice: {names}")
        sampler = type(self.sampler)
        if sampler.needs_multi_objective and n < 2:
            raise ValueError(
                f"sampler '{self.sampler.name}' optimises several objectives, but got one ({names[0]}); add a "
                "second objective or use tpe/cmaes/gp"
            )
        if n > 1 and not sampler.multi_objective:
            raise ValueError(
                f"sampler '{self.sampler.name}' handles one objective, but got {n} ({', '.join(names)}); use "
                "nsga2, tpe, gp, qmc or random"
            )
        if n > 1 and type(self.scheduler).uses_metric:
            raise ValueError(
                f"scheduler '{self.scheduler.name}' stops trials on one metric, but got {n} objectives; use "
                "`scheduler: fifo` with several objectives"
            )
        return self


def _named(value: Any, registry: Mapping[str, Any], what: str) -> Any:
    if isinstance(value, str):
        value = {"name": value}
    if isinstance(value, Mapping):
        name = value.get("name")
        if name is None:
            raise ValueError(f"`name` is required; valid {what}s are {', '.join(registry)}")
        if name not in registry:
            raise ValueError(f"unknown {what} {name!r}; valid names are {', '.join(registry)}")
    return value


class BudgetSection(_Strict):
    """When the campaign ends."""

    trials: int = Field(ge=1, description="number of trials to run to completion (finished or stopped early)")
    time: float | None = Field(None, description="wall-time limit: '2h', '45m', '1h30m' or seconds")
    max_consecutive_failures: int = Field(
        5, ge=1, description="stop the campaign after this many trials in a row failed for good"
    )

    @field_validator("time", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)


class TrialSection(_Strict):
    """What one trial is: a Horovod job of ``workers`` ranks, trained for ``epochs`` epochs."""

    workers: int = Field(1, ge=1, description="Horovod ranks per trial (Ray actors in the trial's placement group)")
    cpus_per_worker: float = Field(1, gt=0)
    gpus_per_worker: float = Field(0, ge=0)
    epochs: int = Field(10, ge=1)
    max_failures: int = Field(2, ge=0, description="retries of a failed trial, from its last checkpoint")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    threads: int | None = Field(None, ge=1, description="TensorFlow intra-op threads per rank (default: cpus_per_worker)")
    nics: list[str] | None = Field(
        None, min_length=1,
        description="network interfaces Horovod may use, first present one per node (default: the one carrying each "
                    "node's Ray address)",
    )
    rendezvous_timeout: float = Field(120, description="Gloo rendezvous timeout: '2m', '90s' or seconds")
    epoch_timeout: float | None = Field(
        None, description="deadline of one epoch ('10m', '90s' or seconds): a rank that misses it is taken for hung, "
                          "the attempt fails naming it and the trial is retried (default: no deadline)",
    )

    @field_validator("rendezvous_timeout", "epoch_timeout", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("nics")
    @classmethod
    def _interface_names(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if not re.fullmatch(r"[A-Za-z0-9_.:@\-]{1,15}", name):
                raise ValueError(f"{name!r} is not a network interface name (like eth0, ib0, enp1s0)")
        return value


class TrackingSection(_Strict):
    """Where MLflow tracking goes."""

    uri: str | None = Field(None, description="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the embedded server)")
    experiment: str | None = Field(None, description="MLflow experiment (default: the campaign name)")

    @field_validator("uri")
    @classmethod
    def _local_store_absolute(cls, value: str | None) -> str | None:
        return None if value is None else absolute_location(value)


class CampaignConfig(_Strict):
    """A whole campaign file. See ``docs/campaign-file.md``."""

    name: str
    description: str = ""
    workload: WorkloadSection
    search: SearchSection
    budget: BudgetSection
    trial: TrialSection = Field(default_factory=TrialSection)
    concurrency: int | None = Field(None, ge=1, description="trials at once (default: as many as resources allow)")
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    storage: str | None = Field(
        None,
        description="where Ray Tune keeps experiment state and checkpoints: a path every node mounts, or an "
                    "object-store URI (s3://, gs://, ...); default CAMPAIGNS_DIR/NAME/tune, which on several nodes must "
                    "itself be on a shared file system",
    )
    seed: int = Field(0, ge=0)

    @field_validator("storage")
    @classmethod
    def _storage_absolute(cls, value: str | None) -> str | None:
        return None if value is None else absolute_location(value)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        problem = name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _epochs_fit_scheduler(self) -> CampaignConfig:
        scheduler = self.search.scheduler
        grace = getattr(scheduler, "grace_period", None)
        if isinstance(grace, int) and grace > self.trial.epochs:
            raise ValueError(
                f"search.scheduler.grace_period ({grace}) exceeds trial.epochs ({self.trial.epochs}); no trial "
                "could ever be stopped early"
            )
        if isinstance(scheduler, PBT) and scheduler.perturbation_interval >= self.trial.epochs:
            raise ValueError(
                f"search.scheduler.perturbation_interval ({scheduler.perturbation_interval}) must be below "
                f"trial.epochs ({self.trial.epochs}), or PBT never perturbs"
            )
        return self

    @property
    def experiment(self) -> str:
        """MLflow experiment name."""
        return self.tracking.experiment or self.name


@dataclass(frozen=True)
class CampaignSpec:
    """A loaded, fully validated campaign: the config, its search space and where it came from."""

    config: CampaignConfig
    space: SearchSpace
    source: Path
    raw: dict[str, Any]  # the file's data after overrides (logged with the campaign)

    @property
    def metric(self) -> str:
        """The first objective's metric (what schedulers act on)."""
        return self.config.search.objective[0].metric

    @property
    def mode(self) -> str:
        """The first objective's mode."""
        return self.config.search.objective[0].mode


def _clean_loc(loc: Sequence[str | int], data: Any) -> tuple[str | int, ...]:
    """Drop the parts pydantic adds that are not in the file (union tags, validator names)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        in_mapping = isinstance(node, Mapping) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_mapping or in_list:
            out.append(part)
            node = node[part]
        elif isinstance(part, str) and (part in SAMPLERS or part in SCHEDULERS or "[" in part or "-" in part):
            continue  # a discriminated-union tag or a validator label
        else:
            out.append(part)  # a key that is missing from the file
            node = None
    return tuple(out)


def _format_validation_error(exc: ValidationError, source: LoadedYaml, data: Any, origin: str) -> HpoError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = _clean_loc(first["loc"], data)
    kind = first["type"]
    message = first["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "extra_forbidden":
        message = f"unknown key; {_allowed_keys_hint(loc, data)}"
    elif kind == "missing":
        message = "required key is missing; add it"
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        message = f"{message}, but got {first.get('input')!r}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return HpoError(f"{origin if origin else source.where(loc)}: {format_loc(loc)}: {message}{more}")


def _allowed_keys_hint(loc: Sequence[str | int], data: Any) -> str:
    model: Any = CampaignConfig
    node: Any = data
    for part in loc[:-1]:
        node = node.get(part) if isinstance(node, Mapping) else None
        if part in ("sampler", "scheduler") and model is SearchSection:
            registry: Mapping[str, Any] = SAMPLERS if part == "sampler" else SCHEDULERS
            name = node.get("name") if isinstance(node, Mapping) else node
            model = registry.get(str(name))
            if model is None:
                break
            keys = ", ".join(model.model_fields)
            return f"{part} '{name}' accepts {keys}"
        field = getattr(model, "model_fields", {}).get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return "check the spelling against docs/campaign-file.md"
    return f"allowed keys here are {', '.join(model.model_fields)}"


def load_campaign(
    path: str | Path, overrides: Iterable[str] = (), *, check_data: bool = True, check_workload_face: bool = True
) -> CampaignSpec:
    """Load, override and validate a campaign file.

    Args:
        path: the campaign YAML.
        overrides: ``PATH=VALUE`` items (``--set``), applied before validation.
        check_data: require the data file to exist as a regular file this user can read.
        check_workload_face: import the workload to check the parameters and objective metrics against
            what it declares (imports TensorFlow; off for pure schema checks).

    Raises:
        HpoError: one line with file, line, field path and fix.
    """
    source = load_yaml(path, what="campaign file")
    if not isinstance(source.data, Mapping):
        raise HpoError(f"{source.path}: a campaign file must be a YAML mapping (name:, workload:, search:, ...)")
    overrides = list(overrides)
    data = apply_overrides(source.data, overrides)
    try:
        config = CampaignConfig.model_validate(data)
    except ValidationError as exc:
        origin = ""
        loc = _clean_loc(exc.errors()[0]["loc"], data)
        for item in overrides:
            if format_loc(loc).startswith(item.split("=", 1)[0]) or item.split("=", 1)[0].startswith(format_loc(loc)):
                origin = f"--set {item}"
        raise _format_validation_error(exc, source, data, origin) from None

    space_raw = config.search.space
    if isinstance(space_raw, str):
        space_source = load_yaml(space_raw, what="search-space file")
        space = parse_space(space_source.data, source=space_source)
    else:
        space = parse_space(space_raw, source=source, base=("search", "space"))
    _cross_check(config, space, source)
    if check_data:
        _check_data_path(config, source)
    if check_workload_face:
        _check_against_workload(config, space, source)
    return CampaignSpec(config=config, space=space, source=source.path, raw=_resolved_raw(data, config))


def _check_data_path(config: CampaignConfig, source: LoadedYaml) -> None:
    """The data file is a regular file this user can read (its content is checked by ``hpo validate`` and before a
    launch); the error names the campaign file's line as well as the data file."""
    from trainables.data.integrity import check_location

    try:
        check_location(config.workload.data.path)
    except DataError as exc:
        raise HpoError(f"{source.where(('workload', 'data', 'path'))}: workload.data.path: data file {exc.message}") from None


def _resolved_raw(data: Mapping[str, Any], config: CampaignConfig) -> dict[str, Any]:
    """``data`` with every :data:`PATH_FIELDS` value it sets replaced by the validated, absolute one, so that the
    stored ``campaign.yaml`` means the same files from any working directory."""
    raw = copy.deepcopy(dict(data))
    for path in PATH_FIELDS:
        node: Any = raw
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, Mapping) else None
        if not isinstance(node, dict) or not isinstance(node.get(path[-1]), str):
            continue  # not set in the file, or not a path (an inline search space)
        value: Any = config
        for key in path:
            value = getattr(value, key)
        node[path[-1]] = value
    return raw


def _cross_check(config: CampaignConfig, space: SearchSpace, source: LoadedYaml) -> None:
    search = config.search
    if search.sampler.name == "grid":
        try:
            space.grid()
        except HpoError as exc:
            raise HpoError(f"{source.where(('search', 'sampler'))}: {exc.message}") from None
    if isinstance(search.scheduler, PBT):
        for name in search.scheduler.mutated(space):
            if name not in space.searched:
                raise HpoError(
                    f"{source.where(('search', 'scheduler', 'mutate'))}: search.scheduler.mutate: '{name}' is not a "
                    f"searched parameter; valid names are {', '.join(space.searched)}"
                )
        if not search.scheduler.mutated(space):
            raise HpoError(
                f"{source.where(('search', 'scheduler'))}: search.scheduler: PBT needs at least one "
                "unconditional searched parameter to mutate"
            )
    overlap = sorted(set(space.params) & set(config.workload.params))
    if overlap:
        raise HpoError(
            f"{source.where(('workload', 'params', overlap[0]))}: workload.params.{overlap[0]}: also in "
            "search.space; a parameter is either fixed or searched, remove one"
        )


def _check_against_workload(config: CampaignConfig, space: SearchSpace, source: LoadedYaml) -> None:
    from trainables.registry import load_workload

    module = load_workload(config.workload.name)
    known_params = getattr(module, "DEFAULT_PARAMS", None)
    if isinstance(known_params, Mapping):
        for where, names in ((("search", "space"), space.params), (("workload", "params"), config.workload.params)):
            for name in names:
                if name not in known_params:
                    raise HpoError(
                        f"{source.where((*where, name))}: {format_loc((*where, name))}: workload "
                        f"'{config.workload.name}' has no parameter '{name}'; valid names are {', '.join(known_params)}"
                    )
    metrics = getattr(module, "METRICS", None)
    if metrics is not None:
        for index, objective in enumerate(config.search.objective):
            if objective.metric not in metrics and not objective.metric.startswith(RESERVED_PREFIX):
                raise HpoError(
                    f"{source.where(('search', 'objective', index, 'metric'))}: search.objective[{index}].metric: "
                    f"workload '{config.workload.name}' does not report '{objective.metric}'; it reports "
                    f"{', '.join(metrics)} (and the framework's hpo.* metrics)"
                )
