"""Typed models of every section of ``mlsd.yaml``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)

ColumnType = Literal["string", "int64", "float64", "bool", "timestamp"]
"""The logical column types a data schema can declare."""

ENCODERS = ("onehot", "hashing", "hashed_ngrams", "bins", "ordinal", "frequency",
            "target", "cross", "fourier", "periodic", "tfidf", "embedding")
TIME_PARTS = ("hour", "weekday", "month", "day")
IMPUTERS = ("median", "mean", "most_frequent", "constant", "zero", "none")
SCALERS = ("standard", "minmax", "robust", "maxabs", "log1p", "quantile", "none")
MULTI_COLUMN = ("cross", "fourier")
"""Encoders that read a list of ``columns`` instead of one ``column``."""

FEATURE_KEYS: dict[str, tuple[str, ...]] = {
    "numeric": ("impute", "fill_value", "scale", "n_quantiles", "missing_indicator"),
    "onehot": ("max_categories", "min_frequency"),
    "hashing": ("buckets", "seed"),
    "hashed_ngrams": ("buckets", "ngram_range"),
    "time": (),
    "bins": ("strategy", "bins", "edges", "output"),
    "ordinal": ("order",),
    "frequency": ("max_categories",),
    "target": ("folds", "smoothing", "max_categories", "seed"),
    "cross": ("buckets", "bins", "seed"),
    "fourier": ("dim", "gamma", "seed"),
    "periodic": ("period", "harmonics"),
    "tfidf": ("max_features", "min_df", "ngram_range"),
    "embedding": ("vectors", "max_words"),
}
"""The settings each kind of feature reads (any other is a mistake in the spec)."""

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400,
          "y": 365.2425 * 86400}


def period_seconds(period: float | str) -> float:
    """A period as a number, or a duration such as ``24h``, ``7d``, ``1y``
    (seconds: ``s``, minutes: ``m``/``min``, ``h``, ``d``, ``w``, ``y``)."""
    import re

    if isinstance(period, int | float) and not isinstance(period, bool):
        if not period > 0 or period == float("inf"):
            raise ValueError(f"period: must be > 0 and finite, got {period}")
        return float(period)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|min|m|h|d|w|y)\s*", str(period))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"period: {period!r} is not a number or a duration like "
                         f"24h, 7d, 30min, 1y")
    return float(m.group(1)) * _UNITS[m.group(2)]


Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]

TASK_METRICS = {
    "binary": ("pr_auc", "roc_auc", "precision", "recall", "f1", "accuracy",
               "balanced_accuracy", "log_loss", "brier"),
    "multiclass": ("macro_f1", "accuracy", "balanced_accuracy", "log_loss"),
    "multilabel": ("micro_pr_auc", "micro_f1", "macro_f1", "micro_precision",
                   "micro_recall", "macro_pr_auc", "macro_roc_auc", "hamming_loss",
                   "subset_accuracy", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
"""The metrics mlsd computes for each task (``problem.metrics`` picks among them)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectiveSpec(_Strict):
    """One objective of several (``problem.objectives.NAME``)."""

    target: str = Field(description="The column holding this objective's label.")
    task: Literal["binary", "regression"] = Field(
        description="regression (a value, squared loss) or binary (a probability, "
        "log loss); the combined score ranks by both.")
    weight: float = Field(gt=0.0, description="Its share of the combined score "
                          "(weights are normalised to sum to 1).")
    positive: Any = Field(default=True, description="binary: the positive label.")


class ProblemSpec(_Strict):
    """What is predicted, and how success is measured."""

    objectives: dict[str, ObjectiveSpec] | None = Field(
        default=None, description="Several objectives (the course's feed ranked "
        "by quality and engagement): a model per objective, combined as "
        "sum(weight * standardised output), and a joint model of the weighted "
        "losses, both measured and compared. task and target, when not given, are "
        "the first objective's (the primary: split, baselines, audit).")
    combine: Literal["decoupled", "joint"] = Field(
        default="decoupled", description="objectives: the combined score served. "
        "decoupled: one model per objective, weights changed at serving time "
        "without retraining (?weights=quality:0.5,engagement:0.5); joint: one "
        "model of the weighted loss, its weights fixed when it is trained.")

    @model_validator(mode="before")
    @classmethod
    def _primary(cls, data: Any) -> Any:
        # with objectives, task and target default to the first one's
        if isinstance(data, dict) and isinstance(data.get("objectives"), dict) and (
                data["objectives"]):
            first = next(iter(data["objectives"].values()))
            if isinstance(first, dict):
                data = {**data}
                data.setdefault("target", first.get("target"))
                data.setdefault("task", first.get("task"))
                if first.get("task") == "binary" and "positive" in first:
                    data.setdefault("positive", first["positive"])
        return data

    task: Literal["binary", "multiclass", "multilabel", "regression"] = Field(
        description="The kind of prediction; it fixes the loss and the metrics. "
        "multilabel: each row has a set of labels (none, one or several), its "
        "target a JSON list ([\"sports\", \"politics\"]) or labels joined by "
        "`separator`; one binary model per label (a classifier chain with "
        "model.chain), a threshold per label."
    )
    target: str = Field(description="The column holding the label.")
    separator: str = Field(
        default="|", min_length=1, description="multilabel: what joins a row's "
        "labels in the target (sports|politics); a target that is a JSON list "
        "needs none. A missing target is unlabelled (the row is left out); [] "
        "is a row with no label.")
    positive: Any = Field(
        default=True,
        description="For binary tasks, the label value of the positive class.",
    )
    metrics: list[str] = Field(
        default_factory=list,
        description="Metrics shown first; every metric fit for the task is computed.",
    )
    threshold: Literal["f1", "cost"] = Field(
        default="f1",
        description="Binary tasks: pick the decision threshold on the validation "
        "split to maximise F1, or to minimise the cost matrix in `costs`.",
    )
    costs: dict[Literal["fp", "fn", "tp", "tn"], float] | None = Field(
        default=None, description="Cost of each outcome, used when threshold: cost."
    )

    @model_validator(mode="after")
    def _check_costs(self) -> ProblemSpec:
        known = TASK_METRICS[self.task]
        for m in self.metrics:
            if m not in known:
                import difflib

                near = difflib.get_close_matches(m, known, n=1)
                raise ValueError(
                    f"metrics: unknown metric {m!r} for a {self.task} task"
                    + (f" (did you mean {near[0]!r}?)" if near else "")
                    + f"; expected some of {', '.join(known)}")
        if self.objectives is not None:
            if len(self.objectives) < 2:
                raise ValueError("objectives: name two or more (one objective is "
                                 "problem.target and problem.task)")
            targets = [o.target for o in self.objectives.values()]
            if len(set(targets)) != len(targets):
                raise ValueError(f"objectives: two objectives share a target "
                                 f"({', '.join(targets)})")
            mine = {o.target: o for o in self.objectives.values()}
            if self.target not in mine or mine[self.target].task != self.task:
                raise ValueError(f"objectives: target {self.target!r} ({self.task}) "
                                 f"must be one of the objectives (the primary one)")
        if self.threshold == "cost" and not self.costs:
            raise ValueError("threshold 'cost' needs a `costs` matrix (fp, fn, ...)")
        if self.task != "binary" and self.threshold == "cost":
            raise ValueError("a cost threshold applies only to binary tasks")
        return self

    @property
    def targets(self) -> list[str]:
        """Every label column: the target, and each objective's."""
        return list(dict.fromkeys([self.target, *[
            o.target for o in (self.objectives or {}).values()]]))


class SourceSpec(_Strict):
    """One raw input: a file path or glob, read with a format."""

    path: str = Field(description="File path or glob, relative to the project "
                      "(it must stay inside it, or inside a folder of `data_roots`).")
    # the project's `data_roots`, set by ProjectSpec: where else files may be
    _data_roots: tuple[str, ...] = PrivateAttr(default=())
    format: Literal["csv", "jsonl", "json", "parquet", "avro", "protobuf",
                    "pickle"] | None = Field(
        default=None, description="Read format; by default from the file extension."
    )
    key: str | None = Field(default=None, description="Column identifying a row.")
    delimiter: str = Field(default=",", min_length=1, max_length=1,
                           description="CSV: the field separator.")
    quotechar: str = Field(default='"', min_length=1, max_length=1,
                           description="CSV: the quote character.")
    header: bool = Field(default=True, description="CSV: the first line names the "
                         "columns (else they are column_1, column_2, ...).")
    encoding: str = "utf-8"
    nested: Literal["json", "flatten", "struct"] = Field(
        default="json", description="Nested objects (JSON, JSONL, Parquet, Avro): "
        "keep them as JSON text (json), flatten them to dotted columns (a.b), or "
        "keep them as typed structs whose fields are inferred and validated "
        "(struct; query them as a.b in SQL).")
    reader_schema: str | None = Field(
        default=None, description="Avro: reader schema file (.avsc) for schema "
        "evolution; the writer schema comes from the file.")
    proto: str | None = Field(default=None, description="Protobuf: the .proto file.")
    message: str | None = Field(default=None, description="Protobuf: the message "
                                "type (needed when the .proto defines several).")
    trusted: bool = Field(
        default=False, description="Pickle: loading a pickle runs code from its "
        "author; only a source marked trusted is loaded.")
    load: Literal["overwrite", "append", "upsert"] = Field(
        default="overwrite", description="How a load lands: replace the dataset "
        "(the files are the whole truth), add to it, or merge on `key`.")
    max_columns: int = Field(
        default=10_000, ge=1, description="CSV: a header with more columns is "
        "refused (one line) instead of read.")
    max_record_bytes: int = Field(
        default=16 << 20, ge=1_024, description="CSV: a line longer than this is "
        "never read whole; it is quarantined with its first 200 characters and the "
        "load goes on.")

    @model_validator(mode="after")
    def _upsert_key(self) -> SourceSpec:
        if self.load == "upsert" and not self.key:
            raise ValueError("load 'upsert' needs `key`: the column to merge on")
        return self

    def format_options(self, root: Path):
        """The reader options of this source (paths resolved under ``root``)."""
        from ..formats import FormatOptions

        return FormatOptions(
            delimiter=self.delimiter, quotechar=self.quotechar,
            encoding=self.encoding, header=self.header, nested=self.nested,
            reader_schema=root / self.reader_schema if self.reader_schema else None,
            proto=root / self.proto if self.proto else None, message=self.message,
            trusted=self.trusted, max_columns=self.max_columns,
            max_record_bytes=self.max_record_bytes)


class SqlSourceSpec(_Strict):
    """A table or query of a SQL database (PostgreSQL, MySQL/MariaDB, SQLite)."""

    url: str = Field(description="SQLAlchemy URL, e.g. "
                     "postgresql+psycopg://user@127.0.0.1/shop; keep the password "
                     "out of it and name `password_env` instead.")
    table: str | None = Field(default=None, description="A table to read.")
    query: str | None = Field(default=None, description="Or a SELECT to read.")
    db_schema: str | None = Field(default=None, alias="schema",
                                  description="The table's schema (namespace).")
    watermark: str | None = Field(
        default=None, description="A column that grows with new rows: only rows "
        "above the last loaded value are read, and each load is appended.")
    password_env: str | None = Field(
        default=None, description="Environment variable holding the password.")
    key: str | None = Field(default=None, description="Column identifying a row.")
    chunk_rows: int = Field(default=50_000, ge=1, description="Rows per fetch.")
    load: Literal["overwrite", "append", "upsert"] | None = Field(
        default=None, description="How a load lands; by default append with a "
        "watermark (only new rows are read), else overwrite (a snapshot). Use "
        "upsert with an `updated_at` watermark to take changed rows too.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_of(self) -> SqlSourceSpec:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        if self.load == "upsert" and not self.key:
            raise ValueError("load 'upsert' needs `key`: the column to merge on")
        if self.load == "append" and not self.watermark:
            raise ValueError("load 'append' needs a `watermark`, or every run would "
                             "add the whole table again")
        return self


class RestSourceSpec(_Strict):
    """A JSON API read page by page."""

    endpoint: str = Field(description="URL of the first page.")
    records: str | None = Field(default=None, description="Dotted path to the "
                                "list of records in a page (e.g. data.items).")
    pagination: Literal["none", "page", "offset", "cursor", "link"] = "none"
    page_param: str = "page"
    offset_param: str = "offset"
    size_param: str | None = Field(default=None, description="Query parameter "
                                   "for the page size (e.g. per_page).")
    page_size: int | None = Field(default=None, ge=1)
    cursor_param: str = "cursor"
    cursor_path: str | None = Field(default=None, description="Dotted path of "
                                    "the next cursor in a page.")
    start_page: int = 1
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with "
                                    "every request; ${NAME} is read from the "
                                    "environment (tokens stay out of the spec).")
    params: dict[str, Any] = Field(default_factory=dict)
    rate_limit: float | None = Field(default=None, gt=0,
                                     description="Requests per second at most.")
    retries: int = Field(default=5, ge=0)
    backoff: float = Field(default=0.5, ge=0, description="Seconds, doubled at "
                           "each retry (or the server's Retry-After).")
    timeout: float = Field(default=30.0, gt=0)
    max_pages: int | None = Field(default=None, ge=1)
    key: str | None = None
    load: Literal["overwrite", "append", "upsert"] = "overwrite"

    @model_validator(mode="after")
    def _check(self) -> RestSourceSpec:
        if self.pagination == "cursor" and not self.cursor_path:
            raise ValueError("pagination 'cursor' needs `cursor_path`")
        if self.load == "upsert" and not self.key:
            raise ValueError("load 'upsert' needs `key`: the column to merge on")
        return self


class BlobSourceSpec(_Strict):
    """A folder of unstructured files (text, images, ...): one row per file."""

    folder: str = Field(description="The folder, relative to the project (it must "
                        "stay inside it, or inside a folder of `data_roots`).")
    pattern: str = Field(default="**/*", description="Which files, as a glob.")
    _data_roots: tuple[str, ...] = PrivateAttr(default=())
    key: str | None = "path"
    load: Literal["overwrite", "append", "upsert"] = "overwrite"


BROKER_SCHEMES = ("rabbitmq", "amqp", "redis", "kafka")


class StreamSampleSpec(_Strict):
    """Keep a sample of a stream instead of all of it (a reservoir)."""

    n: int = Field(ge=1, le=10_000_000, description="Rows to keep.")
    weights: str | None = Field(default=None, description="A numeric column: rows "
                                "are kept in proportion to it (A-ExpJ); missing or "
                                "negative weights count as 0 (never kept).")


class BrokerSourceSpec(_Strict):
    """Messages of a broker queue (RabbitMQ) or stream (Redis Streams),
    consumed into the lake by `mlsd consume NAME` in micro-batches."""

    broker: str = Field(description="The broker's URL: rabbitmq://user@host:5672/"
                        "vhost or redis://host:6379/0; keep the password out of it "
                        "and name `password_env` instead.")
    password_env: str | None = Field(
        default=None, description="Environment variable holding the password.")
    queue: str = Field(min_length=1, max_length=255, description="The RabbitMQ "
                       "queue or the Redis stream to consume.")
    format: Literal["json", "avro", "protobuf"] = Field(
        default="json", description="Each message's payload: one JSON object, "
        "one Avro record (schemaless, written with `avro_schema`), or one "
        "Protobuf message (`proto` and `message`).")
    avro_schema: str | None = Field(default=None, description="Avro: the writer "
                                    "schema file (.avsc), relative to the project.")
    proto: str | None = Field(default=None, description="Protobuf: the .proto "
                              "file, relative to the project.")
    message: str | None = Field(default=None, description="Protobuf: the message "
                                "type (needed when the .proto defines several).")
    id_from: Literal["message_id", "entry_id", "offset", "field"] | None = Field(
        default=None, description="Where a message's id comes from, for "
        "exactly-once storage (a redelivered message is dropped by it): the AMQP "
        "message_id property (RabbitMQ), the entry id (Redis), partition:offset "
        "(Kafka: offset), or a payload "
        "field (`id_field`). Required: a source without ids is refused.")
    id_field: str | None = Field(default=None, description="The payload field "
                                 "holding the message id (id_from: field).")
    payload_field: str = Field(default="payload", min_length=1, description=(
        "Redis: the entry field holding the payload (the entry's other fields "
        "are kept as headers)."))
    group: str = Field(default="mlsd", min_length=1, description="Redis: the "
                       "consumer group (created at the stream's start if missing).")
    consumer: str = Field(default="mlsd-1", min_length=1, description="Redis: this "
                          "consumer's name in the group; a restarted consumer "
                          "with the same name takes its unacknowledged entries "
                          "again.")
    claim_idle_seconds: float = Field(
        default=60.0, gt=0, le=86_400, description="Redis: entries another "
        "consumer of the group has held this long without acknowledging them "
        "are taken over at start (a consumer that died and is not started "
        "again: fewer workers, a new name). Longer than a batch takes.")
    batch_rows: int = Field(default=5000, ge=1, le=1_000_000, description="A micro-"
                            "batch is committed when it holds this many messages...")
    batch_seconds: float = Field(default=5.0, gt=0, le=3600, description="... or "
                                 "when its first message is this old.")
    dead_letter: str | None = Field(
        default=None, description="Where messages that fail validation are "
        "published, the reasons in headers (Redis: fields); default QUEUE.dead. "
        "They are in the quarantine too.")
    dedupe_window: int = Field(
        default=1_000_000, ge=1, description="How many recent message ids are "
        "kept (and read back from the lake at start) to drop redeliveries.")
    key: str | None = Field(default=None, description="Column identifying a row.")
    nested: Literal["json", "flatten", "struct"] = Field(
        default="json", description="Nested objects in JSON payloads: kept as JSON "
        "text, flattened to dotted columns, or typed structs.")
    reservoir: StreamSampleSpec | None = Field(
        default=None, description="Keep a uniform (or weighted) sample of `n` "
        "rows of the stream instead of every row: `sources/NAME` is the sample, "
        "rewritten with each micro-batch; a restart goes on with the same draws. "
        "The quarantine still keeps every refused message.")

    @field_validator("broker")
    @classmethod
    def _scheme(cls, v: str) -> str:
        scheme = v.split("://", 1)[0].lower() if "://" in v else ""
        if scheme not in BROKER_SCHEMES:
            raise ValueError(f"broker: unknown scheme {scheme or v!r}; expected "
                             f"rabbitmq://..., redis://... or kafka://...")
        if re.match(r"^[a-z]+://[^/@]*:[^/@]*@", v):
            raise ValueError("broker: the URL holds a password; name the "
                             "environment variable in `password_env` instead")
        return v

    @model_validator(mode="after")
    def _ids(self) -> BrokerSourceSpec:
        kind = self.kind
        if self.id_field and self.id_from in (None, "field"):
            object.__setattr__(self, "id_from", "field")
        if self.id_from is None:
            native = {"rabbitmq": "message_id", "kafka": "offset"}.get(kind,
                                                                        "entry_id")
            raise ValueError(f"say where a message's id comes from: `id_from: "
                             f"{native}` or `id_field: FIELD` (exactly-once storage "
                             f"drops redeliveries by id)")
        if self.id_from == "field" and not self.id_field:
            raise ValueError("id_from 'field' needs `id_field`")
        if self.id_from == "message_id" and kind != "rabbitmq":
            raise ValueError("id_from 'message_id' is RabbitMQ's; a Redis stream "
                             "has `entry_id`, Kafka `offset`, both `id_field`")
        if self.id_from == "entry_id" and kind != "redis":
            raise ValueError("id_from 'entry_id' is a Redis stream's; RabbitMQ has "
                             "`message_id`, Kafka `offset`, both `id_field`")
        if self.id_from == "offset" and kind != "kafka":
            raise ValueError("id_from 'offset' is Kafka's (partition:offset)")
        if self.format == "avro" and not self.avro_schema:
            raise ValueError("format 'avro' needs `avro_schema` (the writer "
                             "schema's .avsc file): a message carries no schema")
        if self.format == "protobuf" and not self.proto:
            raise ValueError("format 'protobuf' needs `proto` (the .proto file)")
        return self

    @property
    def kind(self) -> str:
        """``rabbitmq``, ``redis`` or ``kafka``."""
        scheme = self.broker.split("://", 1)[0].lower()
        return "rabbitmq" if scheme in ("rabbitmq", "amqp") else scheme

    @property
    def dead_letter_queue(self) -> str:
        return self.dead_letter or f"{self.queue}.dead"

    @property
    def load(self) -> str:
        return "append"


class StreamServeSpec(BrokerSourceSpec):
    """Scoring from a broker (`mlsd serve --stream`): rows to score arrive on
    `queue`, one JSON object a message; each prediction is published to
    `predictions` (RabbitMQ: to the message's reply_to, with its
    correlation_id, when it has one) and logged like the REST service's."""

    predictions: str = Field(min_length=1, max_length=255, description="The "
                             "queue (Redis: stream) predictions are published to.")
    batch_rows: int = Field(default=256, ge=1, le=10_000, description="Requests "
                            "scored together, at most (a request of that many "
                            "rows)...")
    batch_seconds: float = Field(default=0.05, gt=0, le=60, description="... and "
                                 "the longest a request waits for others.")

    @model_validator(mode="after")
    def _json_rows(self) -> StreamServeSpec:
        if self.format != "json":
            raise ValueError("serve.stream: requests are JSON rows (format: json)")
        if self.reservoir is not None:
            raise ValueError("serve.stream: every request is answered; a "
                             "reservoir samples a source (sources.NAME.reservoir)")
        return self


def _source_kind(value: Any) -> str:
    if isinstance(value, dict):
        if "endpoint" in value:
            return "rest"
        if "folder" in value:
            return "blobs"
        if "broker" in value:
            return "broker"
        return "sql" if "url" in value else "file"
    return {SqlSourceSpec: "sql", RestSourceSpec: "rest", BlobSourceSpec: "blobs",
            BrokerSourceSpec: "broker"}.get(type(value), "file")


AnySource = Annotated[
    Annotated[SourceSpec, Tag("file")] | Annotated[SqlSourceSpec, Tag("sql")]
    | Annotated[RestSourceSpec, Tag("rest")] | Annotated[BlobSourceSpec,
                                                         Tag("blobs")]
    | Annotated[BrokerSourceSpec, Tag("broker")],
    Discriminator(_source_kind),
]


class ValidateSpec(_Strict):
    """Constraints every source's rows must meet; a failing row is quarantined."""

    required: list[str] = Field(default_factory=list)
    ranges: dict[str, tuple[float | None, float | None]] = Field(default_factory=dict)
    allowed: dict[str, list[Any]] = Field(default_factory=dict)
    patterns: dict[str, str] = Field(
        default_factory=dict, description="Text columns and the regular expression "
        "(RE2 syntax) their values must match.")
    unique: list[str] = Field(
        default_factory=list, description="Columns whose values, together, must "
        "not repeat within a load; a repeat is quarantined (the first is kept).")
    checks: dict[str, str] = Field(
        default_factory=dict, description="Named SQL boolean expressions over a "
        "row (DuckDB syntax), e.g. `paid_after_order: paid_at >= created_at`; a "
        "row where one is false is quarantined.")
    null_values: list[str] = Field(
        default_factory=lambda: ["", "NA", "N/A", "null", "NULL", "None"],
        description="Raw text values read as missing.",
    )
    infer_threshold: float = Field(
        default=0.95,
        gt=0.5,
        le=1.0,
        description="Share of non-missing values that must parse as a type for "
        "schema inference to choose it (a robust vote).",
    )


    @model_validator(mode="after")
    def _check_patterns(self) -> ValidateSpec:
        import re

        for col, pattern in self.patterns.items():
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"patterns.{col}: not a valid regular expression: "
                                 f"{err}") from None
        for name, expr in self.checks.items():
            if ";" in expr:
                raise ValueError(f"checks.{name}: one boolean expression, no ';'")
        return self


class UnitSpec(_Strict):
    """Values measured in several units, converted to one."""

    unit_column: str = Field(description="The column naming each row's unit.")
    to: str = Field(description="The unit every value is converted to.")
    factors: dict[str, float] = Field(
        min_length=1, description="Unit name -> factor into `to` (e.g. km: 1000, "
        "m: 1 when `to` is m).")


class DedupeSpec(_Strict):
    """Keep one row per key in a load: the latest by a column."""

    key: list[str] = Field(min_length=1)
    keep_latest_by: str | None = Field(
        default=None, description="The row with the largest value is kept (ties: "
        "the later line); without it, the later line is kept.")


class TransformSpec(_Strict):
    """Cleaning and derived columns, applied to every source while loading."""

    trim: bool | list[str] = Field(default=False, description="Strip spaces from "
                                   "text columns (all, or the listed ones).")
    lower: list[str] = Field(default_factory=list)
    upper: list[str] = Field(default_factory=list)
    units: dict[str, UnitSpec] = Field(
        default_factory=dict, description="float64 columns to convert to one unit; "
        "a row with a missing or unknown unit is quarantined.")
    dedupe: DedupeSpec | None = Field(
        default=None, description="Duplicates of the key in one load go to the "
        "quarantine (rule `dedupe`), the latest stays.")
    derive: dict[str, str] = Field(
        default_factory=dict, description="New columns as SQL expressions over a "
        "row (DuckDB syntax), e.g. `total: price * quantity`.")

    @model_validator(mode="after")
    def _check(self) -> TransformSpec:
        for name, expr in self.derive.items():
            if ";" in expr:
                raise ValueError(f"derive.{name}: one expression, no ';'")
        return self


class DatasetSpec(_Strict):
    """How sources become one training table."""

    union: list[str] = Field(min_length=1, description="Sources stacked together.")
    key: str | None = Field(default=None, description="Row key of the union.")


class SplitSpec(_Strict):
    """How rows are assigned to train, valid and test."""

    strategy: Literal["random", "stratified", "time", "group", "time+group"] = Field(
        default="random", description="random and stratified place a row by a seeded "
        "hash of its key; group by a hash of its group; time gives the newest rows "
        "to test; time+group keeps a group in one split and test after train.")
    time: str | None = Field(default=None, description="Time column (strategies "
                             "time and time+group).")
    group: str | None = Field(
        default=None, description="Group column (strategies group and time+group): a "
        "group never spans two splits."
    )
    gap: float | str | None = Field(
        default=None, description="Time strategies: rows this close before the start "
        "of valid and of test are left out of every split (a duration such as 7d, "
        "12h; a number in the time column's own units when it holds numbers), so "
        "what the model learns from the last training days cannot leak into the "
        "first evaluated ones.")
    test: Fraction = 0.2
    valid: Fraction = Field(
        default=0.1, description="Share of all rows carved from training."
    )

    @model_validator(mode="after")
    def _check_strategy(self) -> SplitSpec:
        if self.strategy in ("time", "time+group") and not self.time:
            raise ValueError(f"strategy {self.strategy!r} needs `time`: the time "
                             f"column")
        if self.strategy in ("group", "time+group") and not self.group:
            raise ValueError(f"strategy {self.strategy!r} needs `group`: the group "
                             f"column")
        if self.gap is not None:
            if self.strategy not in ("time", "time+group"):
                raise ValueError("gap: applies to the time strategies (time, "
                                 "time+group) only")
            try:
                period_seconds(self.gap)
            except ValueError:
                raise ValueError(f"gap: {self.gap!r} is not a number or a duration "
                                 f"like 7d, 12h, 30min") from None
        if self.test + self.valid >= 0.9:
            raise ValueError("test + valid must leave at least 10% for training")
        return self

    @property
    def gap_seconds(self) -> float:
        """The gap as seconds (or time-column units), 0 without one."""
        return 0.0 if self.gap is None else period_seconds(self.gap)


SAMPLE_METHODS = ("convenience", "snowball", "judgment", "quota", "random",
                  "stratified", "weighted", "reservoir", "importance")
SAMPLE_KEYS: dict[str, tuple[str, ...]] = {
    "convenience": ("n", "fraction", "where"),
    "snowball": ("n", "keys", "where", "link", "edges", "max_depth"),
    "judgment": ("keys", "where", "chosen_by", "why"),
    "quota": ("by", "quota", "per_category", "where"),
    "random": ("n", "fraction", "replace"),
    "stratified": ("n", "fraction", "by", "allocation", "reweight"),
    "weighted": ("n", "fraction", "weights", "replace", "reweight"),
    "reservoir": ("n", "weights"),
    "importance": ("n", "proposal", "density"),
}
"""The settings each sampling method reads (any other is a mistake)."""


class EdgesSpec(_Strict):
    """A table of links for a snowball sample: rows lead from ``from`` to ``to``."""

    dataset: str = Field(description="A lake dataset (`sources/NAME`, or a source "
                         "name) holding the links.")
    from_: str = Field(alias="from", description="Column of the linking key.")
    to: str = Field(description="Column of the linked key.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SampleSpec(_Strict):
    """Which rows of the training table are drawn to train on (``sample:``).

    The sample is written as ``samples/NAME`` before the split; the train split
    keeps only the rows it drew, with their weights; valid and test are never
    sampled. Every method comes with a bias report: the sample against the
    population, column by column."""

    method: Literal["convenience", "snowball", "judgment", "quota", "random",
                    "stratified", "weighted", "reservoir", "importance"] = Field(
        description="Non-probability: convenience, snowball, judgment, quota. "
        "Probability: random, stratified, weighted, reservoir, importance.")
    n: int | None = Field(default=None, ge=1, description="Rows to draw (of the "
                          "whole training table).")
    fraction: float | None = Field(default=None, gt=0.0, le=1.0,
                                   description="Share of the rows to draw, instead "
                                   "of `n`.")
    seed: int | None = Field(default=None, description="Seed of the draw (default: "
                             "the project's `seed`).")
    where: str | None = Field(default=None, description="A SQL predicate on the "
                              "rows: the available rows (convenience, quota), the "
                              "expert's choice (judgment), the seeds (snowball).")
    keys: list[Any] | None = Field(default=None, description="Row keys: the "
                                   "expert's list (judgment), the seeds "
                                   "(snowball).")
    chosen_by: str | None = Field(default=None, description="judgment: who chose "
                                  "the rows (kept in lineage).")
    why: str | None = Field(default=None, description="judgment: on what grounds.")
    by: str | None = Field(default=None, description="stratified, quota: the "
                           "column whose values are the strata (default: the "
                           "target).")
    allocation: Literal["proportional", "equal"] = Field(
        default="proportional", description="stratified: rows per stratum in "
        "proportion to its size, or the same for every stratum.")
    quota: dict[str, int] | None = Field(default=None, description="quota: rows "
                                         "per category, first come.")
    per_category: int | None = Field(default=None, ge=1, description="quota: the "
                                     "same number for every category.")
    weights: str | None = Field(default=None, description="weighted, reservoir: a "
                                "column or SQL expression giving each row's weight "
                                "(exp(-age_days / 30) favours recent rows).")
    replace: bool = Field(default=False, description="random, weighted: draw with "
                          "replacement (a row drawn twice weighs twice).")
    reweight: bool | None = Field(
        default=None, description="weighted, stratified: train with weights that "
        "undo the unequal chances (1 / inclusion probability), so the model "
        "learns the population (default: true for weighted, false for "
        "stratified, whose equal allocation is meant to change the mix).")
    proposal: str | None = Field(default=None, description="importance: the "
                                 "distribution drawn from, as a weight per row "
                                 "(column or SQL; default uniform).")
    density: str | None = Field(default=None, description="importance: the "
                                "distribution wanted, as an unnormalised weight "
                                "per row; drawn rows weigh density / proposal.")
    link: str | None = Field(default=None, description="snowball: the column "
                             "holding the key of a linked row.")
    edges: EdgesSpec | None = Field(default=None, description="snowball: a table "
                                    "of links instead of a link column.")
    max_depth: int | None = Field(default=None, ge=1, description="snowball: "
                                  "follow links at most this many steps.")

    @model_validator(mode="after")
    def _check_method(self) -> SampleSpec:
        m = self.method
        allowed = {"method", "seed", *SAMPLE_KEYS[m]}
        for name in self.model_fields_set - allowed:
            readers = [k for k, v in SAMPLE_KEYS.items() if name in v]
            raise ValueError(f"{name}: method {m!r} does not read it (it is read "
                             f"by {', '.join(readers) or 'no method'})")
        if "n" in SAMPLE_KEYS[m] and "fraction" in SAMPLE_KEYS[m]:
            if (self.n is None) == (self.fraction is None):
                raise ValueError(f"method {m!r} needs `n` or `fraction` (one of "
                                 f"them)")
        elif "n" in SAMPLE_KEYS[m] and self.n is None and m != "snowball":
            raise ValueError(f"method {m!r} needs `n`: the rows to draw")
        if m == "snowball":
            if self.n is None and self.max_depth is None:
                raise ValueError("snowball needs `n` (rows to reach) or "
                                 "`max_depth`")
            if (self.link is None) == (self.edges is None):
                raise ValueError("snowball needs `link` (a column) or `edges` (a "
                                 "table), one of them")
        if m in ("snowball", "judgment") and (self.keys is None) == (
                self.where is None):
            raise ValueError(f"{m} needs `keys` or `where`, one of them")
        if m == "judgment" and not (self.chosen_by or "").strip():
            raise ValueError("judgment needs `chosen_by`: who chose the rows (kept "
                             "in lineage)")
        if m == "quota" and (self.quota is None) == (self.per_category is None):
            raise ValueError("quota needs `quota` (rows per category) or "
                             "`per_category`, one of them")
        if m == "quota" and self.quota and any(v < 0 for v in self.quota.values()):
            raise ValueError("quota: rows per category must be >= 0")
        if m == "weighted" and not self.weights:
            raise ValueError("weighted needs `weights`: a column or SQL expression")
        if m == "importance" and not self.density:
            raise ValueError("importance needs `density`: the distribution wanted, "
                             "as a weight per row")
        return self

    @property
    def reweights(self) -> bool:
        """Whether drawn rows carry weights that undo their unequal chances."""
        if self.method == "importance":
            return True
        if self.reweight is not None:
            return self.reweight
        return self.method == "weighted"


class FeatureSpec(_Strict):
    """One feature: raw column(s) and how they become model inputs.

    Without ``encode`` the column is numeric (impute, then scale). ``encode`` is one
    of ``onehot``, ``hashing``, ``hashed_ngrams``, ``bins``, ``ordinal``,
    ``frequency``, ``target``, ``periodic``, ``tfidf`` (one ``column``), ``cross``
    or ``fourier`` (a list of ``columns``), or a list of time parts (``hour``,
    ``weekday``, ``month``, ``day``). Each kind reads only its own settings; a
    setting given to a kind that does not read it is an error. Every analysis
    runs on the training split only (docs/features.md).
    """

    column: str | None = Field(default=None, description="The raw column read.")
    columns: list[str] | None = Field(
        default=None, min_length=1,
        description="cross, fourier: the raw columns combined.")
    encode: str | list[str] | None = None
    impute: str = Field(default="median", description=(
        "numeric: fill missing values with the training median, mean, "
        "most_frequent value, a constant (fill_value), zero, or none (kept NaN)."))
    fill_value: float | None = Field(default=None,
                                     description="numeric, impute: constant.")
    scale: str = Field(default="standard", description=(
        "numeric: standard (mean/std), minmax, robust (median/IQR), maxabs, log1p "
        "(values must be >= 0), quantile (to [0, 1]) or none."))
    n_quantiles: int = Field(default=100, ge=10, le=10_000,
                             description="numeric, scale: quantile.")
    missing_indicator: bool = Field(
        default=True,
        description="Numeric: add a 0/1 column marking missing values when training "
        "rows have any (missingness can carry signal).",
    )
    max_categories: int | None = Field(
        default=None, ge=1, le=10_000_000,
        description="onehot: columns kept (default 20); frequency, target: "
        "categories kept by name (default 100000).")
    min_frequency: int = Field(default=1, ge=1)
    buckets: int | None = Field(
        default=None, ge=2, le=2**22,
        description="hashing (default 1024), hashed_ngrams, cross (default 4096).")
    ngram_range: tuple[int, int] | None = Field(
        default=None, description="hashed_ngrams (default [1, 2]), tfidf ([1, 1]).")
    seed: int = 0
    strategy: Literal["uniform", "quantile", "edges"] | None = Field(
        default=None, description="bins: uniform width, training quantiles "
        "(default), or explicit edges.")
    bins: int | None = Field(default=None, ge=2, le=1000,
                             description="bins (default 10); cross: bucketise "
                             "numeric inputs into this many quantile bins.")
    edges: list[float] | None = Field(default=None, min_length=1,
                                      description="bins, strategy: edges.")
    output: Literal["onehot", "ordinal"] | None = Field(
        default=None, description="bins: a column per bin (default) or the bin's "
        "number.")
    order: list[str | int | float | bool] | None = Field(
        default=None, min_length=1, description="ordinal: the categories in order "
        "(default: the training values sorted).")
    folds: int | None = Field(default=None, ge=2, le=50,
                              description="target: folds of the out-of-fold "
                              "training values (default 5).")
    smoothing: float | None = Field(default=None, ge=0,
                                    description="target: pseudo-rows of the prior "
                                    "mixed into each category (default 10).")
    dim: int | None = Field(default=None, ge=1, le=8192,
                            description="fourier: output columns (default 64).")
    gamma: float | None = Field(default=None, gt=0, description=(
        "fourier: the RBF kernel's exp(-gamma |x - x'|^2) on standardised inputs "
        "(default 1)."))
    period: float | str | None = Field(default=None, description=(
        "periodic: the cycle's length, a number or a duration such as 24h, 7d "
        "(default 24h)."))
    harmonics: int | None = Field(default=None, ge=1, le=64,
                                  description="periodic: sin/cos pairs (default 1).")
    max_features: int | None = Field(default=None, ge=1, le=10_000_000,
                                     description="tfidf: vocabulary size "
                                     "(default 20000).")
    min_df: int | None = Field(default=None, ge=1, description=(
        "tfidf: training documents a word must appear in (default 2)."))
    vectors: str | None = Field(default=None, description=(
        "embedding: a file of pretrained word vectors in the word2vec/fastText "
        "text format (.vec: a word and its numbers a line), or a folder holding a "
        "pretrained sentence encoder (a model2vec model, or model.onnx with its "
        "tokenizer.json), inside the project; `mlsd features pretrain` makes "
        "word vectors from the project's own text."))
    max_words: int | None = Field(default=None, ge=1, le=5_000_000, description=(
        "embedding: the most frequent training words whose vectors are kept "
        "(default 50000)."))

    agg: Literal["count", "sum", "mean", "min", "max"] | None = Field(
        default=None, description="A stream feature: this aggregate of `column` "
        "over the entity's (`by`) earlier events in a window of event time "
        "(`time`), computed in batch over the training table and online from "
        "online_store (docs/features.md). count needs no column.")
    window: str | float | None = Field(default=None, description="The window: a "
                                       "duration (30m, 1h, 7d) or seconds.")
    by: str | None = Field(default=None, description="The entity key column.")
    time: str | None = Field(default=None, description="The event time column.")
    window_type: Literal["sliding", "tumbling", "session"] = Field(
        default="sliding", description="sliding: the last `window` before each "
        "event; tumbling: since the start of its window (aligned on the epoch); "
        "session: its session (events at most `gap` apart), at most `window` "
        "back.")
    gap: str | float | None = Field(default=None, description="session: the "
                                    "longest pause inside a session.")
    events: str | None = Field(default=None, description="The source whose rows "
                               "are the events (clicks for orders), joined to each "
                               "row point in time by `by` and `time` (the same "
                               "column names in both); default: the rows themselves.")
    lateness: str | float = Field(default=0.0, description="Online: how far behind "
                                  "the newest event time seen an event may still "
                                  "arrive and count (later ones are dropped).")

    @model_validator(mode="after")
    def _check_window(self) -> FeatureSpec:
        keys = ("window", "by", "time", "gap")
        if self.agg is None:
            extra = [k for k in (*keys, "window_type", "lateness", "events")
                     if k in self.model_fields_set]
            if extra:
                raise ValueError(f"{extra[0]}: applies to a stream feature (with "
                                 f"`agg`)")
            return self
        if self.encode is not None:
            raise ValueError("agg: a stream feature is a number (no `encode`)")
        missing = [k for k in ("window", "by", "time") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"agg: a stream feature needs `{missing[0]}` "
                             f"(window, by, time)")
        if self.column is None and self.agg != "count":
            raise ValueError(f"agg: {self.agg} reads a `column` (count needs none)")
        if self.window_type == "session" and self.gap is None:
            raise ValueError("window_type: session needs `gap` (the longest pause "
                             "inside a session, like 20m)")
        if self.window_type != "session" and self.gap is not None:
            raise ValueError("gap: applies only to window_type: session")
        from .._windows import seconds

        for k in ("window", "gap", "lateness"):
            if getattr(self, k) is not None and not (k == "lateness"
                                                     and self.lateness in (0, "0")):
                seconds(getattr(self, k), k)
        return self

    def stream_window(self):
        """The window this stream feature computes (``None``: not one)."""
        if self.agg is None:
            return None
        from .._windows import Window, seconds

        return Window(column=self.column, agg=self.agg,
                      window=seconds(self.window, "window"), by=self.by,
                      time=self.time, kind=self.window_type,
                      gap=None if self.gap is None else seconds(self.gap, "gap"),
                      lateness=0.0 if self.lateness in (0, "0") else
                      seconds(self.lateness, "lateness"), events=self.events)

    @model_validator(mode="after")
    def _check_encode(self) -> FeatureSpec:
        enc = self.encode
        if isinstance(enc, list):
            bad = [p for p in enc if p not in TIME_PARTS]
            if bad or not enc:
                raise ValueError(
                    f"encode: unknown time part {bad[0] if bad else '(empty list)'!r}; "
                    f"expected some of {', '.join(TIME_PARTS)}"
                )
        elif enc is not None and enc not in ENCODERS:
            import difflib

            near = difflib.get_close_matches(enc, ENCODERS, n=1)
            raise ValueError(
                f"encode: unknown encoder {enc!r}"
                + (f" (did you mean {near[0]!r}?)" if near else "")
                + f"; expected one of {', '.join(ENCODERS)}, a list of time parts, "
                f"or nothing (numeric)"
            )
        kind = self.kind
        if kind in MULTI_COLUMN:
            if self.columns is None or self.column is not None:
                raise ValueError(f"encode: {kind} combines a list of `columns` "
                                 f"(not `column`)")
            if kind == "cross" and len(self.columns) < 2:
                raise ValueError("columns: a cross needs at least two columns")
            if len(set(self.columns)) != len(self.columns):
                raise ValueError(f"columns: {self.columns} names a column twice")
        elif (self.column is None and self.agg is None) or self.columns is not None:
            raise ValueError(f"a {kind} feature reads one `column`"
                             + (" (`columns` is for cross and fourier)"
                                if self.columns is not None else ""))
        given = self.model_fields_set - {"column", "columns", "encode", "agg",
                                         "window", "by", "time", "window_type",
                                         "gap", "lateness", "events"}
        foreign = sorted(given - set(FEATURE_KEYS[kind]))
        if foreign:
            readers = [k for k, keys in FEATURE_KEYS.items() if foreign[0] in keys]
            raise ValueError(
                f"{foreign[0]}: does not apply to a {kind} feature"
                + (f" (it is read by: {', '.join(readers)})" if readers else "")
                + f"; a {kind} feature reads "
                + (", ".join(FEATURE_KEYS[kind]) or "no setting"))
        if self.impute not in IMPUTERS:
            raise ValueError(
                f"impute: unknown imputer {self.impute!r}; expected one of "
                f"{', '.join(IMPUTERS)}"
            )
        if self.impute == "constant" and self.fill_value is None:
            raise ValueError("impute: constant needs a fill_value")
        if self.fill_value is not None and self.impute != "constant":
            raise ValueError("fill_value: applies only with impute: constant")
        if self.scale not in SCALERS:
            raise ValueError(
                f"scale: unknown scaler {self.scale!r}; expected one of "
                f"{', '.join(SCALERS)}"
            )
        if self.ngram_range is not None:
            lo, hi = self.ngram_range
            if not 1 <= lo <= hi <= 5:
                raise ValueError("ngram_range: expected [lo, hi] with "
                                 "1 <= lo <= hi <= 5")
        if kind == "embedding":
            from pathlib import PurePosixPath

            if not self.vectors:
                raise ValueError("embedding: name the `vectors` file (word2vec/"
                                 "fastText text format; `mlsd features pretrain` "
                                 "makes one) or encoder folder (model2vec, ONNX)")
            p = PurePosixPath(self.vectors.replace("\\", "/"))
            if p.is_absolute() or ".." in p.parts:
                raise ValueError(f"vectors: {self.vectors!r} must stay inside the "
                                 f"project")
        if kind == "bins":
            if (self.strategy == "edges") != (self.edges is not None):
                raise ValueError("edges: give edges together with strategy: edges")
            if self.edges is not None and sorted(set(self.edges)) != self.edges:
                raise ValueError(f"edges: {self.edges} must increase strictly")
            if self.edges is not None and "bins" in given:
                raise ValueError("bins: explicit edges already fix the bins")
        if self.order is not None and len(set(map(str, self.order))) != len(self.order):
            raise ValueError(f"order: {self.order} names a category twice")
        if self.period is not None:
            period_seconds(self.period)
        return self

    @property
    def kind(self) -> str:
        """``numeric``, ``time``, or the encoder's name."""
        if self.encode is None:
            return "numeric"
        if isinstance(self.encode, list):
            return "time"
        return self.encode

    @property
    def inputs(self) -> list[str]:
        """The raw columns this feature reads (a stream feature: the column its
        window adds to the training table)."""
        if self.agg is not None:
            return [self.stream_window().name]
        return list(self.columns) if self.columns is not None else [self.column]

    @property
    def label(self) -> str:
        """The feature's name: its column, or its columns joined by ``*``."""
        if self.agg is not None:
            return self.stream_window().name
        return self.column if self.columns is None else "*".join(self.columns)

    def settings(self) -> dict[str, Any]:
        """The settings given in the spec that this kind of feature reads."""
        return {k: getattr(self, k) for k in FEATURE_KEYS[self.kind]
                if k in self.model_fields_set}


class FeaturePolicySpec(_Strict):
    """Rules over all features, applied on the training split."""

    drop_missing_above: float | None = Field(
        default=None, gt=0.0, le=1.0,
        description="Leave out a feature when more than this share of its training "
        "rows lack a value (any of its columns); the report lists what was left "
        "out and why. Off by default.")
    prune_tolerance: float = Field(
        default=0.005, ge=0.0, le=0.5,
        description="`mlsd features prune`: a feature may go when the validation "
        "metric without it (and without the others proposed) is at most this much "
        "worse, relative to the metric with every feature (0.005: half a percent).")
    prune_budget_seconds: float = Field(
        default=300.0, gt=0.0,
        description="`mlsd features prune`: stop refitting after this long; the "
        "features not measured by then are kept and listed as such.")


class IntervalSpec(_Strict):
    """Prediction intervals of a regression model (``model.intervals:``)."""

    coverage: float = Field(
        default=0.9, gt=0.5, lt=1.0, description="The share of future targets "
        "an interval should hold (0.9: from the 5% to the 95% quantile).")
    method: Literal["cqr", "conformal", "quantile"] = Field(
        default="cqr", description="The intervals served. quantile: two models "
        "fitted with the quantile (pinball) loss at (1 - coverage)/2 and "
        "(1 + coverage)/2, no guarantee; conformal: the model's value plus or "
        "minus the validation residuals' conformal quantile (split conformal: "
        "coverage holds on average for exchangeable rows, the width is the same "
        "everywhere); cqr: the quantile pair widened by the conformal quantile "
        "of its validation errors (conformalised quantile regression, Romano "
        "et al. 2019: the guarantee, and widths that follow the inputs). All "
        "three are measured on the test split (coverage, width, interval "
        "score) and compared in the report.")


class SearchSpec(_Strict):
    """A hyper-parameter search on the validation split (``model.search:``)."""

    trials: int = Field(default=30, ge=1, le=10_000, description="Trials at "
                        "most (the search is reproducible when they, not the "
                        "clock, stop it).")
    seconds: float | None = Field(default=300, gt=0, description="The time box: "
                                  "no trial starts after it (null: none).")
    space: dict[str, list[float | int | str] | dict[str, list[Any]]] = Field(
        default_factory=dict, description="Parameters searched, added to or "
        "replacing the learner's default space: [low, high] (integers when both "
        "are), [low, high, log], or {choices: [...]}. LightGBM's default: "
        "num_leaves, learning_rate, min_data_in_leaf, feature_fraction, "
        "bagging_fraction, lambda_l2; the linear model's: C or alpha.")

    @model_validator(mode="after")
    def _check_space(self) -> SearchSpec:
        for name, rng in self.space.items():
            if isinstance(rng, dict):
                if set(rng) != {"choices"} or not rng["choices"]:
                    raise ValueError(f"space.{name}: expected {{choices: [...]}} "
                                     f"with at least one value")
                continue
            nums = [v for v in rng[:2] if isinstance(v, int | float)
                    and not isinstance(v, bool)]
            if len(rng) not in (2, 3) or len(nums) != 2 or (
                    len(rng) == 3 and rng[2] != "log"):
                raise ValueError(f"space.{name}: expected [low, high] or [low, high, "
                                 f"log], got {rng}")
            if not nums[0] < nums[1]:
                raise ValueError(f"space.{name}: low {nums[0]} must be below high "
                                 f"{nums[1]}")
            if len(rng) == 3 and nums[0] <= 0:
                raise ValueError(f"space.{name}: a log scale needs low above 0")
        return self


class ModelSpec(_Strict):
    """Which learner to fit, with what parameters."""

    kind: Literal["lightgbm", "linear"] = "lightgbm"
    params: dict[str, Any] = Field(default_factory=dict)
    class_weight: Literal["balanced", "none", "effective", "costs"] | dict[
            str, float] = Field(
        default="balanced",
        description="Classification: how much each class weighs in the loss. "
        "balanced: inversely to its frequency; effective: the class-balanced "
        "loss (Cui et al. 2019), by the effective number of its rows "
        "(class_balanced_beta); costs: a binary task's rows by what an error on "
        "them costs (problem.costs), the same matrix that can pick the threshold; "
        "or a weight per class ({spam: 10, ham: 1}); none.",
    )
    chain: bool = Field(
        default=False, description="multilabel: a classifier chain: the model of "
        "each label also reads the labels before it (the true ones in training, "
        "the predicted ones, at 0.5, when scoring), so labels that go together "
        "inform each other; by default one independent model per label.")
    calibration: Literal["none", "isotonic", "platt"] = Field(
        default="none", description="Classification: map the model's scores to "
        "calibrated probabilities, fitted on the validation split (isotonic: a "
        "non-decreasing step function; platt: a logistic curve on the log-odds); "
        "the report draws the reliability curve before and after.")
    loss: Literal["default", "focal", "absolute", "huber", "quantile"] = Field(
        default="default", description="default: the learner's own (log loss, "
        "squared error); focal (binary tasks): the log loss scaled by (1 - p_t)"
        "^focal_gamma, so rows already right weigh little and the fit spends "
        "itself on the hard ones (LightGBM: a custom objective; linear: its own "
        "L-BFGS fit). Regression: absolute (the median), huber (squared near 0, "
        "absolute beyond huber_delta: robust to outliers), quantile (the "
        "`quantile` of the target given the inputs).")
    huber_delta: float | None = Field(
        default=None, gt=0.0, description="loss: huber (LightGBM): where the loss "
        "turns from squared to absolute, in the target's units (default: 1.345 "
        "robust standard deviations of the training target, the classic constant "
        "for 95% efficiency under normal noise).")
    quantile: float = Field(default=0.5, gt=0.0, lt=1.0, description="loss: "
                            "quantile: the quantile predicted (0.9: a value the "
                            "target stays under 90% of the time).")
    focal_gamma: float = Field(default=2.0, ge=0.0, description="loss: focal: "
                               "the focusing exponent (0: the log loss).")
    focal_alpha: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="loss: focal: the weight of "
        "positive rows (1 - alpha for negatives); none by default, as "
        "class_weight already weighs classes.")
    onnx: bool = Field(
        default=False, description="Also save the learner as ONNX (model.onnx in "
        "the artifact, its input the feature vector), checked against native "
        "scoring on the test rows. Needs `pip install 'mlsd[onnx]'`. "
        "`mlsd models export ID` does it for a model already trained.")
    search: SearchSpec | None = Field(
        default=None, description="Search the learner's parameters on the "
        "validation split (Optuna TPE, time-boxed) before the final fit; the "
        "spec's own params are kept when no trial beats them. The test split is "
        "read once, by the final model. `mlsd tune` runs the search alone.")
    intervals: IntervalSpec | None = Field(
        default=None, description="Regression: prediction intervals, served "
        "with every value (lower, upper) and measured on test.")
    class_balanced_beta: float = Field(
        default=0.999, gt=0.0, lt=1.0, description="class_weight: effective: the "
        "beta of (1 - beta) / (1 - beta^n); near 1 approaches balanced, near 0 "
        "none.")
    threads: int | None = Field(
        default=None, ge=1,
        description="The most threads a fit or prediction uses (default: every "
                    "core this process may use). Each takes fewer when the input is "
                    "small or other processes keep cores busy; the model is the same "
                    "whatever the count.")


class ImbalanceSpec(_Strict):
    """Resampling of the training rows (``imbalance:``). Weights in the loss
    are ``model.class_weight``'s."""

    resample: Literal["none", "random_under", "tomek", "random_over", "smote",
                      "smote_tomek", "smotenc"] = Field(
        default="none", description="How the training rows are resampled before "
        "the fit (imbalanced-learn): random_under, tomek (Tomek links), "
        "random_over, smote, smote_tomek on the feature matrix; smotenc on the raw "
        "numeric and categorical inputs, then applied by the features. Validation "
        "and test rows never are.")
    ratio: float | None = Field(
        default=None, gt=0.0, le=1.0, description="Binary tasks: the minority/"
        "majority ratio after resampling (default 1: as many of each).")
    k_neighbors: int = Field(default=5, ge=1, description="smote: neighbours a "
                             "synthetic row is interpolated between.")
    two_phase: bool = Field(
        default=False, description="Train on the resampled rows, then fine-tune "
        "on the original distribution (LightGBM: more rounds from the first "
        "model; linear: a warm start).")
    fine_tune: float = Field(
        default=0.25, gt=0.0, le=1.0, description="two_phase: the fine-tuning "
        "rounds, as a share of the model's rounds.")
    compare: list[Literal["none", "random_under", "tomek", "random_over", "smote",
                          "smote_tomek", "smotenc"]] = Field(
        default_factory=list, description="Other strategies fitted and measured "
        "on validation next to no resampling and the chosen one, in the report.")


class NoiseSpec(_Strict):
    """Gaussian noise on numbers."""

    scale: float = Field(default=0.05, gt=0.0, le=1.0, description="The noise's "
                         "standard deviation, as a share of each column's on the "
                         "train split.")
    columns: list[str] | None = Field(default=None, description="The columns "
                                      "(default: every numeric column).")


class TextAugmentSpec(_Strict):
    """EDA operations on one text column (Wei and Zou 2019)."""

    column: str = Field(description="The text column.")
    synonyms: float = Field(default=0.1, ge=0.0, le=1.0, description="Share of "
                            "the words replaced by a synonym.")
    insert: float = Field(default=0.0, ge=0.0, le=1.0, description="Synonyms "
                          "inserted at random places, as a share of the words.")
    swap: float = Field(default=0.0, ge=0.0, le=1.0, description="Random swaps of "
                        "two words, as a share of the words.")
    delete: float = Field(default=0.0, ge=0.0, le=1.0, description="Chance that "
                          "each word is dropped.")
    thesaurus: str | None = Field(
        default=None, description="A TSV (word<TAB>synonym...) or JSON file of "
        "synonyms, in the project; default: WordNet (Debian's wordnet-base).")


class TemplatesSpec(_Strict):
    """Rows of one label made from templates."""

    column: str = Field(description="The text column the templates fill.")
    label: Any = Field(description="The label of the rows made.")
    templates: list[str] = Field(min_length=1, description="Texts with {slot}s.")
    slots: dict[str, list[str]] = Field(default_factory=dict,
                                        description="Values of each slot.")
    n: int = Field(default=100, ge=1, description="Rows to make.")


class MixupSpec(_Strict):
    """Mixup of feature rows."""

    alpha: float = Field(default=0.2, gt=0.0, description="lam ~ Beta(alpha, "
                         "alpha): small alpha keeps rows near one of the pair.")
    share: float = Field(default=0.5, gt=0.0, le=10.0, description="Mixed rows, "
                         "as a share of the training rows.")


class SmoteAugmentSpec(_Strict):
    """SMOTE as augmentation: more rows of every class."""

    share: float = Field(default=0.5, gt=0.0, le=10.0, description="Synthetic "
                         "rows of each class, as a share of its rows.")
    k_neighbors: int = Field(default=5, ge=1)


class RobustnessSpec(_Strict):
    """The robustness check: perturbed test rows, and how often predictions
    change."""

    noise: float = Field(default=0.05, ge=0.0, le=1.0, description="Noise on the "
                         "numeric feature columns, as a share of each one's "
                         "standard deviation on train.")
    synonyms: float = Field(default=0.0, ge=0.0, le=1.0, description="Text: share "
                            "of words replaced by a synonym (needs WordNet or a "
                            "thesaurus).")
    swap: float = Field(default=0.1, ge=0.0, le=1.0, description="Text: swaps, as "
                        "a share of the words.")
    delete: float = Field(default=0.05, ge=0.0, le=1.0, description="Text: chance "
                          "that each word is dropped.")
    rows: int = Field(default=1000, ge=10, description="Test rows perturbed "
                      "(a seeded random choice when there are more).")
    thesaurus: str | None = Field(default=None, description="As augment.text.")


class AugmentSpec(_Strict):
    """New training rows made from the train split (``augment:``), never
    evaluated; and the robustness check of the trained model."""

    copies: int = Field(default=1, ge=1, le=20, description="Augmented copies of "
                        "each training row, per raw method (noise, text).")
    noise: NoiseSpec | None = None
    text: TextAugmentSpec | None = None
    templates: TemplatesSpec | None = None
    mixup: MixupSpec | None = None
    smote: SmoteAugmentSpec | None = None
    robustness: RobustnessSpec | None = Field(
        default_factory=RobustnessSpec, description="Perturb test rows and report "
        "how often predictions change (null: no check).")

    @property
    def any_rows(self) -> bool:
        return any(x is not None for x in (self.noise, self.text, self.templates,
                                           self.mixup, self.smote))


class EvaluationSpec(_Strict):
    """How test metrics are reported (``evaluation:``)."""

    replicates: int = Field(
        default=1000, ge=0, le=100_000, description="Bootstrap replicates of the "
        "test rows for the intervals of every metric and of the model's margin "
        "over each baseline (0: none); a time split draws moving blocks.")
    level: float = Field(default=0.95, gt=0.5, lt=1.0, description="The "
                         "intervals' confidence level.")
    slices: list[str] | dict[str, str] = Field(
        default_factory=list, description="Segments measured apart on the test "
        "split: columns (a slice per value, the 20 largest) or named SQL "
        "predicates ({new_authors: 'author_posts_before = 0'}); the report shows "
        "each slice's metrics and the gap between the best and the worst.")


_ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,39}$"


class RegistrySpec(_Strict):
    """What a run does with the model registry (``registry:``): the new model
    is compared with the model an alias points at, on the same test rows, and
    may get an alias."""

    compare_with: str | None = Field(
        default="champion", pattern=_ALIAS_PATTERN, description="After training, "
        "compare the new model with the model this alias points at (when there "
        "is one): both scored on the new model's test rows, less any row the "
        "other was fitted or tuned on, with a paired bootstrap interval of the "
        "margin. In the run summary and the report. null: no comparison.")
    alias: str | None = Field(
        default=None, pattern=_ALIAS_PATTERN, description="An alias every run's "
        "new model gets (for example challenger).")
    promote_if_better: bool = Field(
        default=False, description="Point the compare_with alias at the new model "
        "when the margin's interval lies above zero (or when no model holds the "
        "alias yet). A running mlsd serve swaps it in within serve.reload_seconds.")


class TrackingSpec(_Strict):
    """Runs logged to an experiment tracker (``tracking:``)."""

    mlflow_uri: str | None = Field(
        default=None, min_length=1, description="Log each run to MLflow at this "
        "tracking URI (sqlite:///mlflow.db: a file in the project; http://host:5000: "
        "a server): parameters, metrics with their intervals, mlsd's ids as tags, "
        "the report and the model manifest. Needs `pip install 'mlsd[mlflow]'`. A "
        "tracker that cannot be reached is a warning: the run and its model stand.")
    experiment: str | None = Field(default=None, min_length=1, description="The "
                                   "MLflow experiment (default: the project name).")


class AuditSpec(_Strict):
    """What the audit may accept as legitimate."""

    allow_shared: list[str] = Field(
        default_factory=list,
        description="Entities that may appear in several splits (a user in a time "
        "split); their overlap is reported as low severity.",
    )


class LakeSpec(_Strict):
    """Where the lake's tables are, and how long it keeps old versions."""

    url: str | None = Field(
        default=None, description="Object storage for the tables instead of "
        ".mlsd/lake: s3://bucket/prefix (also gs://, abfs://). Credentials come "
        "from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "AWS_REGION; AWS_ENDPOINT_URL and AWS_ALLOW_HTTP=true for MinIO and other "
        "S3-compatible stores), never from this file. The catalog, the models "
        "and the reports stay in .mlsd. On engine: spark the tasks read and write "
        "the files there too, given the driver's credentials.")
    retention_hours: int = Field(
        default=24 * 7, ge=0, description="`mlsd lake vacuum` removes the files "
        "that only versions older than this need (0: keep only the latest).")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from ..errors import LakeError
        from ..lake._store import check_url

        try:
            return check_url(v)
        except LakeError as err:
            raise ValueError(str(err)) from None


class ReportSpec(_Strict):
    """The run reports kept in ``.mlsd/reports/``."""

    keep: int = Field(
        default=10, ge=1, description="Each run writes a self-contained report of "
        "a few MB; the reports of the last `keep` runs stay, older ones are "
        "removed after a run (and by `mlsd gc`).")


class ServeSpec(_Strict):
    """Limits of the REST service (``mlsd serve``)."""

    stream: StreamServeSpec | None = Field(
        default=None, description="Score rows that arrive on a broker queue or "
        "stream (`mlsd serve --stream`), with the REST service's code path and "
        "log.")

    model: str | None = Field(
        default=None, min_length=1, description="The model `mlsd serve` and "
        "`mlsd predict` use when none is named: an alias (champion, "
        "challenger) or a model id. Default: the model the alias champion "
        "points at, else the latest. Read again every serve.reload_seconds: a "
        "promotion is swapped in without a failed request.")

    max_body_bytes: int = Field(
        default=1_048_576, ge=1_024, description="A request body larger than this "
        "gets 413 before it is read whole.")
    max_string_chars: int = Field(
        default=10_000, ge=1, description="A text field longer than this gets 422.")
    threads: int | None = Field(
        default=None, ge=1, description="Requests scored at once, each on a worker "
        "thread (default: the cores this process may use); more wait their turn. "
        "/health never waits for them. More threads than cores only contend for "
        "Python's lock: 4 on 2 cores took /health p99 from 13 ms to 35 ms.")
    workers: int = Field(
        default=1, ge=1, le=64, description="Worker processes (`mlsd serve "
        "--workers`): each loads the model and logs its own batches; /metrics "
        "sums them all.")
    reload_seconds: float = Field(
        default=5.0, ge=0, description="How often the service checks which model "
        "it should serve (an alias moved by `mlsd models promote`, serve.model, "
        "the latest run): a new one is loaded beside the old and swapped in "
        "between requests, none failing. 0: never (the model chosen at start).")
    log: bool = Field(
        default=True, description="Log every prediction (request id, item key, "
        "model version, time, raw inputs, outputs) to the lake's prediction log, "
        "in the background; and accept /feedback.")
    log_flush_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="The prediction log is committed "
        "this often (or every log_batch_rows rows): a crash loses at most this "
        "much.")
    log_batch_rows: int = Field(default=10_000, ge=1, le=1_000_000, description=(
        "Rows that make the prediction log commit before log_flush_seconds (a "
        "commit costs ~10 ms whatever its size: at thousands of predictions a "
        "second, 1,000-row batches took a twentieth of stream scoring's time)."))
    log_retention_days: float | None = Field(
        default=None, gt=0, description="Logged predictions older than this are "
        "deleted (hourly; the log holds raw inputs). Default: kept until `mlsd "
        "lake delete` or a vacuum after a change.")
    grpc_port: int | None = Field(
        default=None, ge=0, le=65535, description="Serve the same predict over "
        "gRPC on this port too (`mlsd serve --grpc-port`; `mlsd models proto` "
        "prints the service's .proto); the API key applies there too, as "
        "x-api-key metadata.")
    api_key_env: str = Field(
        default="MLSD_API_KEY", min_length=1, description="The environment "
        "variable holding the API key; when it is set, every endpoint but /health "
        "and /ready wants it (X-API-Key or Authorization: Bearer).")


MONITOR_THRESHOLDS = ("psi", "ks", "js", "unseen_share", "missing_shift",
                      "metric_drop")


class MonitorSpec(_Strict):
    """Monitoring of served traffic (``mlsd monitor``): the prediction log
    against the model's training rows."""

    since: str = Field(default="7d", description="How far back the prediction log "
                       "is read (a duration: 24h, 7d).")
    window: str = Field(default="1d", description="The width of the windows of the "
                        "figures over time (a duration: 1h, 1d).")
    min_rows: int = Field(default=100, ge=1, description="Fewer served rows than "
                          "this in the range: no verdict (status too_few_rows).")
    thresholds: dict[str, float] = Field(default_factory=dict, description=(
        "Alert past these (default: the audit's): psi (0.2), ks (0.1), js (0.1), "
        "unseen_share (0.01), missing_shift (0.05), and metric_drop (0.05: the "
        "primary metric on naturally labelled served rows, worse than on the "
        "test split by more than this)."))

    @model_validator(mode="after")
    def _check(self) -> MonitorSpec:
        period_seconds(self.since)
        period_seconds(self.window)
        unknown = sorted(set(self.thresholds) - set(MONITOR_THRESHOLDS))
        if unknown:
            raise ValueError(f"thresholds: unknown {unknown}; expected some of "
                             f"{', '.join(MONITOR_THRESHOLDS)}")
        return self


class LabelRule(_Strict):
    """One rule of ``labels.policy``: where a row's label may come from."""

    from_: Literal["column", "human", "natural", "function", "model"] = Field(
        alias="from", description="column: the sources' target column; human, "
        "natural, function, model: the label store's labels of that kind, one "
        "label an item by `aggregate`.")
    aggregate: Literal["majority", "dawid_skene"] | None = Field(
        default=None, description="How the store's votes become one label "
        "(default: labels.aggregate).")
    min_confidence: float = Field(
        default=0.0, ge=0.0, le=1.0, description="A label less sure than this "
        "(the majority's share of the votes, or Dawid-Skene's posterior) is "
        "not taken from this rule.")

    @model_validator(mode="after")
    def _column_has_no_votes(self) -> LabelRule:
        if self.from_ == "column" and (self.aggregate or self.min_confidence):
            raise ValueError("a `from: column` rule reads the target as it is: it "
                             "has no votes to aggregate and no confidence")
        return self


class LabelFunctionSpec(_Strict):
    """A labeling function (``labels.functions.NAME``): a rule that votes
    ``label`` on the rows it matches and abstains on the others."""

    label: str = Field(description="The label it votes.")
    column: str | None = Field(default=None, description="The column it reads "
                               "(keywords, regex, above, below).")
    keywords: list[str] | None = Field(
        default=None, min_length=1, description="Any of these words in the column "
        "(whole words, case-insensitive).")
    regex: str | None = Field(default=None, description="A regular expression "
                              "(RE2) that matches somewhere in the column.")
    above: float | None = Field(default=None, description="The column's value is "
                                "above this.")
    below: float | None = Field(default=None, description="The column's value is "
                                "below this.")
    where: str | None = Field(default=None, description="An SQL predicate on the "
                              "row (run in mlsd's locked DuckDB).")

    @model_validator(mode="after")
    def _one_rule(self) -> LabelFunctionSpec:
        kinds = [k for k in ("keywords", "regex", "where") if getattr(self, k)]
        if self.above is not None or self.below is not None:
            kinds.append("above/below")
        if len(kinds) != 1:
            raise ValueError(f"give one rule: keywords, regex, above/below or where "
                             f"(got {', '.join(kinds) or 'none'})")
        if kinds[0] != "where" and not self.column:
            raise ValueError(f"{kinds[0]} reads a `column`: name it")
        if kinds[0] == "where" and self.column:
            raise ValueError("a `where` rule reads the row: `column` is not used")
        if self.regex is not None:
            import re

            try:
                re.compile(self.regex)
            except re.error as err:
                raise ValueError(f"regex {self.regex!r}: {err}") from None
        return self


class NaturalLabelsSpec(_Strict):
    """Natural labels (``labels.natural``): what users did after a prediction,
    joined to it by request id within an attribution window."""

    window: str = Field(description="How long after a prediction an event still "
                        "counts (7d, 30min); a prediction whose window has not "
                        "closed stays unlabelled, not negative.")
    event: str | None = Field(default=None, description="The event that makes a "
                              "prediction positive (purchase): a binary label.")
    weights: dict[str, float] | None = Field(
        default=None, description="Instead of `event`: a score, the sum of the "
        "weights of the events in the window ({purchase: 1, add_to_cart: 0.5, "
        "click: 0.2}), positive from `threshold`.")
    threshold: float | None = Field(default=None, description="weights: the score "
                                    "from which a prediction is positive.")
    positive: str = Field(default="true", description="The label of a positive.")
    negative: str = Field(default="false", description="The label of a negative.")

    @model_validator(mode="after")
    def _one_way(self) -> NaturalLabelsSpec:
        period_seconds(self.window)
        if (self.event is None) == (self.weights is None):
            raise ValueError("give `event` (one event makes a positive) or "
                             "`weights` (a score of the events), not both")
        if self.weights is not None and self.threshold is None:
            raise ValueError("weights: give the `threshold` from which the score "
                             "is positive")
        return self

    @property
    def window_seconds(self) -> float:
        return period_seconds(self.window)


class LabelImportSpec(_Strict):
    """A file of labels every run imports into the label store
    (``labels.imports``; the same as `mlsd label import`)."""

    path: str = Field(description="The file, relative to the project (it must "
                      "stay inside it).")
    format: Literal["labelstudio"] | None = Field(
        default=None, description="labelstudio for a Label Studio JSON export "
        "(recognised by itself); else the file's own format, one label a row.")
    item: str | None = Field(default=None, description="The item key's column "
                             "(default: the project's key, else `item`).")
    label: str = Field(default="label", description="The label's column.")
    annotator: str = Field(default="annotator", description="The column naming "
                           "who labelled the row.")
    source: str | None = Field(default=None, description="One source for every "
                               "row, instead of `annotator`.")
    kind: Literal["human", "natural", "function", "model"] = "human"
    confidence: str | None = None
    time: str | None = None

    @field_validator("path")
    @classmethod
    def _inside(cls, v: str) -> str:
        from pathlib import PurePosixPath

        p = PurePosixPath(v.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"path {v!r} must stay inside the project")
        return v


class ActiveSimulationSpec(_Strict):
    """``labels.simulate``: the active-learning simulation in every run."""

    start: int = Field(default=20, ge=2, description="Labels to start from.")
    batch: int = Field(default=20, ge=1, description="Labels added a round.")
    rounds: int = Field(default=10, ge=1, le=100, description="Rounds.")
    strategies: list[Literal["least_confidence", "margin", "entropy", "committee",
                             "random"]] = Field(
        default_factory=lambda: ["margin", "entropy", "random"], min_length=2,
        description="The strategies drawn (random is the yardstick).")
    diverse: bool = Field(default=False, description="Uncertainty strategies "
                          "pick diverse batches (k-center).")


class LabelsSpec(_Strict):
    """Hand labels in the label store (`mlsd label import`): how they are
    read and combined."""

    order: list[str] | None = Field(
        default=None, description="The labels in order when they are ordered "
        "(low, medium, high): agreement then weighs a near miss as half right "
        "(quadratic-weighted kappa, ordinal alpha).")
    aggregate: Literal["majority", "dawid_skene"] = Field(
        default="dawid_skene", description="One label an item from its votes: "
        "majority (the most voted) or dawid_skene (each annotator weighed by "
        "their estimated confusion matrix, by EM).")
    imports: list[LabelImportSpec] = Field(
        default_factory=list, description="Files of labels each run imports into "
        "the label store first (hand labels, Label Studio exports); the same "
        "file twice stores nothing new.")
    natural: NaturalLabelsSpec | None = Field(
        default=None, description="Labels from feedback events joined to the "
        "prediction log (`mlsd label natural`).")
    functions: dict[str, LabelFunctionSpec] = Field(
        default_factory=dict, description="Labeling functions (weak "
        "supervision): rules that vote a label or abstain; `mlsd label apply` "
        "stores their votes (kind function), `{from: function}` in the policy "
        "turns them into labels by the label model.")
    simulate: ActiveSimulationSpec | None = Field(
        default=None, description="Each run replays its train split as if its "
        "labels were unknown and draws each active-learning strategy's learning "
        "curve against random picking, in the report (classification; it fits "
        "the learner rounds x strategies times).")
    weigh_by_confidence: bool = Field(
        default=False, description="Each training row weighs its label's "
        "confidence in the loss (the majority's share, Dawid-Skene's or the "
        "label model's posterior, a pseudo-label's; 1 for the target column's "
        "own): training on probabilistic labels rather than on hard ones.")
    exclude: list[str] = Field(
        default_factory=list, description="Sources (annotators, labeling "
        "functions, models) whose labels the policy and the aggregation ignore: "
        "a careless annotator, a wrong function. Reversible; `mlsd label "
        "exclude SOURCE` removes them from the store instead.")
    policy: list[LabelRule] = Field(
        default_factory=lambda: [LabelRule(**{"from": "column"})], min_length=1,
        description="Where the training table's target comes from, rule by rule: "
        "a row takes the label of the first rule that has one for it, e.g. "
        "[{from: column}, {from: human, min_confidence: 0.6}]: the sources' "
        "target, else the annotators' aggregate when it is sure enough. The "
        "default reads the target column alone.")

    @field_validator("order")
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (len(set(v)) != len(v) or len(v) < 2):
            raise ValueError("order: two or more distinct labels")
        return v

    @field_validator("policy")
    @classmethod
    def _once_each(cls, v: list[LabelRule]) -> list[LabelRule]:
        froms = [r.from_ for r in v]
        if len(set(froms)) != len(froms):
            raise ValueError(f"policy: each source of labels once ({', '.join(froms)})")
        return v

    @property
    def from_store(self) -> bool:
        """Whether the policy reads the label store (else the column alone)."""
        return any(r.from_ != "column" for r in self.policy)


class OnlineStoreSpec(_Strict):
    """Where stream features live between events and predictions (Redis)."""

    url: str = Field(default="redis://127.0.0.1:6379/0", description="redis://"
                     "host:port/db; keep the password out of it (password_env).")
    password_env: str | None = None
    prefix: str | None = Field(default=None, description="The keys' namespace "
                               "(default: the project's name).")


class EngineSpec(_Strict):
    """Where batch work runs: DuckDB in this process (the default), or Spark
    when the data outgrows one machine (``pip install 'mlsd[spark]'``)."""

    kind: Literal["duckdb", "spark"] = Field(
        default="duckdb", description="duckdb (in-process) or spark (PySpark: "
        "file sources are read and validated as Spark tasks, mlsd's own readers "
        "and rules inside mapInArrow, and committed as one Delta transaction; the "
        "training table, the split, the sample, the features' analysis and apply "
        "and batch scoring run as Spark jobs; the model is fitted on the driver, "
        "which reads only the labels and the feature matrices).")
    master: str = Field(
        default="local[2]", description="spark.master: local[N], spark://host:7077, "
        "yarn, k8s://...; ignored with `remote`.")
    remote: str | None = Field(
        default=None, description="A Spark Connect server (sc://host:15002) "
        "instead of a master; its workers need mlsd installed.")
    conf: dict[str, str] = Field(
        default_factory=dict, description="More Spark settings, e.g. "
        "{spark.executor.memory: 4g}.")
    sample_to_fit: bool = Field(
        default=True, description="When the train split's feature matrix is more "
        "than the driver has free memory for, fit the model on a seeded random "
        "sample of the train split that fits (valid and test stay whole; the run "
        "summary says how many rows and why). false: stop with an error that says "
        "the sizes instead. A `sample:` section chooses the sample yourself.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data

    @field_validator("master")
    @classmethod
    def _master(cls, v: str) -> str:
        # Spark's own forms: a wrong one would otherwise surface as the JVM's
        # stack trace when the session starts
        if not re.fullmatch(r"local(\[(\*|[1-9]\d*)(,\s*[1-9]\d*)?\])?|"
                            r"local-cluster\[\d+,\s*\d+,\s*\d+\]|yarn|"
                            r"(spark|k8s|mesos)://\S+", v):
            raise ValueError(f"{v!r} is not a Spark master: local, local[N], "
                             f"local[*], spark://host:7077, yarn or k8s://...")
        return v

    @field_validator("remote")
    @classmethod
    def _remote(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("sc://"):
            raise ValueError(f"{v!r}: a Spark Connect address starts with sc:// "
                             f"(sc://host:15002)")
        return v


class ProjectSpec(_Strict):
    """The whole project file, ``mlsd.yaml``."""

    name: str = Field(min_length=1)
    problem: ProblemSpec
    sources: dict[str, AnySource] = Field(min_length=1)
    validate_: ValidateSpec = Field(default_factory=ValidateSpec, alias="validate")
    transform: TransformSpec = Field(default_factory=TransformSpec)
    dataset: DatasetSpec | None = None
    sample: SampleSpec | None = Field(
        default=None, description="Draw the rows to train on from the training "
        "table (written as samples/NAME); valid and test are never sampled.")
    split: SplitSpec = Field(default_factory=SplitSpec)
    features: list[FeatureSpec] = Field(min_length=1)
    feature_policy: FeaturePolicySpec = Field(default_factory=FeaturePolicySpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    imbalance: ImbalanceSpec = Field(default_factory=ImbalanceSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    audit: AuditSpec = Field(default_factory=AuditSpec)
    lake: LakeSpec = Field(default_factory=LakeSpec)
    report: ReportSpec = Field(default_factory=ReportSpec)
    serve: ServeSpec = Field(default_factory=ServeSpec)
    monitor: MonitorSpec = Field(default_factory=MonitorSpec)
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    labels: LabelsSpec = Field(default_factory=LabelsSpec)
    online_store: OnlineStoreSpec = Field(
        default_factory=OnlineStoreSpec, description="Stream features' online "
        "values: `mlsd consume` writes the events, the service reads them.")
    engine: EngineSpec = Field(
        default_factory=EngineSpec, description="Where batch work runs: `duckdb` "
        "(default) or `spark` (`mlsd run --engine spark`).")
    seed: int = 42
    data_roots: list[str] = Field(
        default_factory=list,
        description="Folders outside the project that file and folder sources may "
        "read (absolute, or relative to the project). By default a source's files "
        "must be inside the project folder.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check_references(self) -> ProjectSpec:
        from ..errors import LakeError
        from ..lake import check_name

        for name, source in self.sources.items():
            try:
                check_name(name)
            except LakeError as err:
                raise ValueError(f"sources: {err}") from None
            if isinstance(source, SourceSpec | BlobSourceSpec):
                source._data_roots = tuple(self.data_roots)
        from ..lake._paths import name_ok

        if not name_ok(self.name):
            raise ValueError(f"name: {self.name!r} must be letters, digits, '_', "
                             f"'.', '-' (it names the project's datasets)")
        union = self.dataset.union if self.dataset else list(self.sources)
        unknown = [s for s in union if s not in self.sources]
        if unknown:
            raise ValueError(
                f"dataset.union: unknown source {unknown[0]!r}; sources are "
                f"{', '.join(self.sources)}"
            )
        cw = self.model.class_weight
        if self.problem.task == "regression" and (
                cw not in ("balanced", "none") or self.imbalance.resample != "none"
                or self.imbalance.compare):
            raise ValueError("model.class_weight and imbalance: class weights and "
                             "resampling are for classification; a regression "
                             "task has no classes")
        if self.augment.smote is not None and self.problem.task == "regression":
            raise ValueError("augment.smote: SMOTE makes rows of a class; a "
                             "regression task has none")
        if self.model.loss == "focal" and self.problem.task != "binary":
            raise ValueError("model.loss: focal is for binary tasks")
        if self.model.chain and self.problem.task != "multilabel":
            raise ValueError("model.chain: a classifier chain is for multilabel "
                             "tasks")
        if self.problem.task == "multilabel":
            self._check_multilabel()
        if self.model.loss in ("absolute", "huber", "quantile") and (
                self.problem.task != "regression"):
            raise ValueError(f"model.loss: {self.model.loss} is for regression "
                             f"tasks")
        if self.model.intervals is not None and self.problem.task != "regression":
            raise ValueError("model.intervals: prediction intervals are for "
                             "regression tasks (a classifier gives probabilities)")
        if self.model.intervals is not None and self.model.loss == "quantile":
            raise ValueError("model.intervals: the model already predicts one "
                             "quantile (loss: quantile); intervals surround a "
                             "central value: use loss default, absolute or huber")
        if cw == "costs" and not (self.problem.task == "binary"
                                  and self.problem.costs):
            raise ValueError("model.class_weight: costs needs a binary task and "
                             "problem.costs (fp, fn, ...)")
        if self.labels.simulate is not None and self.problem.task not in (
                "binary", "multiclass"):
            raise ValueError("labels.simulate: active learning picks by class "
                             "probabilities (binary, multiclass tasks)")
        if self.labels.from_store and not self.key:
            raise ValueError("labels.policy: the label store's labels join the rows "
                             "by their key: set `key` on the sources (or "
                             "dataset.key)")
        for i, f in enumerate(self.features):
            if f.events is not None and f.events not in self.sources:
                raise ValueError(f"features[{i}].events: unknown source "
                                 f"{f.events!r}; sources are "
                                 f"{', '.join(self.sources)}")
            if f.agg is not None and f.window_type == "session" and \
                    f.stream_window().gap > f.stream_window().window:
                raise ValueError(f"features[{i}].gap: longer than its window")
        cols = [c for f in self.features for c in f.inputs]
        for target in self.problem.targets:
            if target in cols:
                raise ValueError(f"features: the target {target!r} cannot be a "
                                 f"feature")
        return self

    @property
    def windows(self) -> list:
        """The stream features' windows (``mlsd.features._stream.Window``),
        once each."""
        out = {}
        for f in self.features:
            w = f.stream_window()
            if w is not None:
                out.setdefault(w.name, w)
        return list(out.values())

    def _check_multilabel(self) -> None:
        """What a multilabel task cannot take, each refused with its reason."""
        why = []
        if self.imbalance.resample != "none" or self.imbalance.compare:
            why.append("imbalance.resample and imbalance.compare: resampling draws "
                       "whole rows, and a row has several labels, so a draw for one "
                       "label's balance unbalances the others; weigh each label's "
                       "classes instead (model.class_weight: balanced, per label)")
        if self.model.class_weight not in ("balanced", "none"):
            why.append("model.class_weight: only balanced (each label's model "
                       "weighs its own two classes) or none")
        if self.augment.smote is not None or self.augment.mixup is not None:
            why.append("augment.smote and augment.mixup: they make rows of one "
                       "class; a multilabel row has a set of labels")
        if self.split.strategy == "stratified":
            why.append("split.strategy: stratified keeps one label's share per "
                       "split; a row has several: use random (the default), group "
                       "or time")
        if any(f.kind == "target" for f in self.features):
            why.append("features: a target encoder averages one label per "
                       "category; a multilabel target has several")
        if self.model.onnx:
            why.append("model.onnx: a set of per-label models is not exported to "
                       "ONNX")
        if why:
            raise ValueError("problem.task multilabel: " + "; ".join(why))

    @property
    def union(self) -> list[str]:
        """The sources that form the training table, in order."""
        return list(self.dataset.union) if self.dataset else list(self.sources)

    @property
    def key(self) -> str | None:
        """The row key of the training table, if declared."""
        if self.dataset and self.dataset.key:
            return self.dataset.key
        keys = {self.sources[s].key for s in self.union}
        return keys.pop() if len(keys) == 1 else None
