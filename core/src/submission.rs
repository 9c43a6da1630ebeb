//! One parse of a job submission: what `POST /v1/jobs`, `POST /v1/jobs/bulk`
//! and a schedule's job template (create and change) turn into before
//! anything is stored.
//!
//! "Parse, don't validate": the request's fields go in once, at the edge,
//! and come out as a [`Submission`] whose model is routed and priced, whose
//! timezone is a [`Tz`], whose `user_id`, `metadata` and inputs are within
//! their limits and storable, or as a [`SubmissionError`] naming the field.
//! Nothing downstream checks these again, and no caller can build a
//! `Submission` any other way.
//!
//! "Storable" means more than "PostgreSQL takes it": whatever is accepted
//! must read back, through every endpoint, the worker and the dashboard. So
//! an input or `metadata` holding a NUL (which `jsonb` refuses), nested
//! deeper than responses can carry it ([`MAX_DEPTH`]), or holding a number
//! that would not read back as itself from `jsonb` (see [`crate::jsonb`]) is
//! a 422 naming it.
//!
//! The checks run in one order, so a request with several faults always
//! gets the same error: the inputs (count, then each: object, size, NUL,
//! depth, numbers), the model (routing, then the price table), the
//! timezone, `user_id`, `metadata` (size, NUL, depth, numbers), and for a
//! template that its metadata is an object.
//!
//! ```
//! use offpeak_core::prices::{PriceTable, RouteTable};
//! use offpeak_core::submission::{ErrorCode, Inputs, Limits, Request, Rules, Submission, AUTO_MODEL};
//! use serde_json::json;
//!
//! let (prices, routes) = (PriceTable::default(), RouteTable::default());
//! let rules = Rules { prices: &prices, routes: &routes, limits: Limits::default() };
//! let request = Request {
//!     use_case: Some("thumbnail".into()),
//!     timezone: Some("Europe/Paris".into()),
//!     ..Request::new(AUTO_MODEL, Inputs::One(json!({"prompt": "a red fox"})))
//! };
//! let submission = Submission::parse(request, chrono_tz::UTC, &rules)?;
//! assert_eq!(submission.model(), "flux-schnell");
//! assert_eq!(submission.tz(), chrono_tz::Europe::Paris);
//!
//! let bad = Request::new("flux-schnell", Inputs::Many(vec![json!({}), json!("x")]));
//! let e = Submission::parse(bad, chrono_tz::UTC, &rules).unwrap_err();
//! assert_eq!((e.code, e.field.as_str()), (ErrorCode::InvalidInput, "inputs[1]"));
//! # Ok::<(), offpeak_core::submission::SubmissionError>(())
//! ```

use chrono_tz::Tz;
use serde_json::Value;

use crate::job::Priority;
use crate::jsonb;
use crate::prices::{PriceTable, RouteTable};
use crate::semantic::CacheChoice;

/// The `model` of a submission that asks for model routing.
pub const AUTO_MODEL: &str = "auto";
/// Longest model name (and use case quoted in an error).
pub const MAX_MODEL_LEN: usize = 100;
/// Longest `user_id`, in bytes.
pub const MAX_USER_ID_LEN: usize = 200;
/// Deepest nesting of arrays and objects in an input or `metadata` (the
/// input object itself is level 1).
///
/// Responses carry an input up to 3 levels below their top (a job in
/// `GET /v1/jobs`' page; the worker's provider request 2), and JSON parsers
/// stop at a nesting limit: serde_json, which this project's own clients,
/// worker and simulator parse with, at 128. Without a limit of its own the
/// API accepted inputs nested 125 or 126 levels deep (a request's body adds
/// only 1 or 2) whose every `GET /v1/jobs` page such a client then could
/// not read. 100 leaves room under every such limit.
pub const MAX_DEPTH: usize = 100;

/// Size limits of a submission (the API's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input, serialised, in bytes.
    pub max_input_bytes: usize,
    /// Largest `metadata`, serialised, in bytes.
    pub max_metadata_bytes: usize,
    /// Most inputs in one bulk submission.
    pub max_bulk_inputs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_input_bytes: 64 * 1024, max_metadata_bytes: 16 * 1024, max_bulk_inputs: 10_000 }
    }
}

/// What a submission is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The known models.
    pub prices: &'a PriceTable,
    /// The model each use case is routed to, for `"model": "auto"`.
    pub routes: &'a RouteTable,
    pub limits: Limits,
}

/// The input or inputs of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    /// `input` of `POST /v1/jobs` or of a schedule's job template.
    One(Value),
    /// `inputs` of `POST /v1/jobs/bulk`.
    Many(Vec<Value>),
}

/// A submission's fields as the request gave them.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub model: String,
    pub use_case: Option<String>,
    pub priority: Priority,
    /// An IANA name; `None` takes the default passed to the parse.
    pub timezone: Option<String>,
    pub user_id: Option<String>,
    pub metadata: Option<Value>,
    pub inputs: Inputs,
    /// `"cache"`: absent or `true` takes the tenant's mode.
    pub cache: CacheChoice,
}

impl Request {
    /// A request of `model` and `inputs` with every other field at the
    /// API's default: low priority, the default timezone, the cache on.
    #[must_use]
    pub fn new(model: impl Into<String>, inputs: Inputs) -> Self {
        Self {
            model: model.into(),
            use_case: None,
            priority: Priority::default(),
            timezone: None,
            user_id: None,
            metadata: None,
            inputs,
            cache: CacheChoice::TenantDefault,
        }
    }
}

/// An input that is a JSON object within the size limit, storable, and
/// that reads back as itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Input(Value);

impl Input {
    /// The input: always a JSON object.
    #[must_use]
    pub fn as_value(&self) -> &Value {
        &self.0
    }

    #[must_use]
    pub fn into_value(self) -> Value {
        self.0
    }
}

/// A parsed submission; see the module docs for what holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    model: String,
    use_case: Option<String>,
    priority: Priority,
    tz: Tz,
    user_id: Option<String>,
    metadata: Option<Value>,
    inputs: Vec<Input>,
    cache: CacheChoice,
}

/// What is wrong with a submission, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A field's value is not acceptable (e.g. an empty `user_id`, no inputs).
    InvalidField,
    /// An input or `metadata` is not an object where one is needed, or
    /// holds what cannot be stored or read back.
    InvalidInput,
    InvalidTimezone,
    UnknownModel,
    UnknownUseCase,
    /// An input or `metadata` is over its size limit.
    PayloadTooLarge,
    /// More inputs than one bulk request takes.
    TooManyInputs,
}

impl ErrorCode {
    /// The `code` of the API's error body.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::InvalidTimezone => "invalid_timezone",
            ErrorCode::UnknownModel => "unknown_model",
            ErrorCode::UnknownUseCase => "unknown_use_case",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::TooManyInputs => "too_many_inputs",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A submission refused: the code, the field it is about (`inputs[3]`,
/// `input.size`, `job.model`) and a message for the submitter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({field}): {message}")]
pub struct SubmissionError {
    pub code: ErrorCode,
    pub field: String,
    pub message: String,
}

impl SubmissionError {
    fn new(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code, field: field.into(), message: message.into() }
    }
}

/// Whether a request is a job submission or a schedule's job template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Job,
    Template,
}

impl Submission {
    /// Parses a job submission; `default_tz` (the tenant's) applies when the
    /// request names no timezone.
    ///
    /// # Errors
    /// The first fault, in the order of the module docs.
    pub fn parse(request: Request, default_tz: Tz, rules: &Rules<'_>) -> Result<Self, SubmissionError> {
        Self::parse_as(request, default_tz, rules, Kind::Job)
    }

    /// Parses a schedule's job template: as a submission of its one input
    /// in the schedule's timezone `tz` (a template has none of its own, so
    /// `request.timezone` is `None`), whose `metadata`, if any, must be an
    /// object (each firing adds `schedule_id`, `schedule_name` and `fire_at`
    /// to it). Fields are named as in the schedule's body: `job.model`.
    ///
    /// # Errors
    /// As [`Submission::parse`], the field under `job.`.
    pub fn parse_template(request: Request, tz: Tz, rules: &Rules<'_>) -> Result<Self, SubmissionError> {
        Self::parse_as(request, tz, rules, Kind::Template).map_err(|e| SubmissionError { field: format!("job.{}", e.field), ..e })
    }

    fn parse_as(request: Request, default_tz: Tz, rules: &Rules<'_>, kind: Kind) -> Result<Self, SubmissionError> {
        let limits = rules.limits;
        let inputs = match request.inputs {
            Inputs::One(v) => vec![parse_input("input", v, limits.max_input_bytes)?],
            Inputs::Many(vs) => {
                if vs.is_empty() {
                    return Err(SubmissionError::new(ErrorCode::InvalidField, "inputs", "inputs must hold at least one input"));
                }
                if vs.len() > limits.max_bulk_inputs {
                    return Err(SubmissionError::new(
                        ErrorCode::TooManyInputs,
                        "inputs",
                        format!("{} inputs; one bulk request takes at most {}", vs.len(), limits.max_bulk_inputs),
                    ));
                }
                vs.into_iter()
                    .enumerate()
                    .map(|(i, v)| parse_input(&format!("inputs[{i}]"), v, limits.max_input_bytes))
                    .collect::<Result<_, _>>()?
            }
        };
        let (model, use_case) = route_model(rules.routes, request.model, request.use_case)?;
        check_model(rules.prices, &model)?;
        let tz = match &request.timezone {
            Some(name) => crate::tz::parse(name)
                .map_err(|e| SubmissionError::new(ErrorCode::InvalidTimezone, "timezone", e.to_string()))?,
            None => default_tz,
        };
        if let Some(u) = &request.user_id {
            if u.is_empty() || u.chars().count() > MAX_USER_ID_LEN || u.contains('\0') {
                return Err(SubmissionError::new(
                    ErrorCode::InvalidField,
                    "user_id",
                    format!("user_id must be 1 to {MAX_USER_ID_LEN} characters without NUL characters"),
                ));
            }
        }
        if let Some(m) = &request.metadata {
            check_json("metadata", m, limits.max_metadata_bytes)?;
            if kind == Kind::Template && !m.is_object() {
                return Err(SubmissionError::new(
                    ErrorCode::InvalidField,
                    "metadata",
                    "a schedule's job metadata must be a JSON object (each job's gets schedule_id, schedule_name and fire_at added)",
                ));
            }
        }
        Ok(Self {
            model,
            use_case,
            priority: request.priority,
            tz,
            user_id: request.user_id,
            metadata: request.metadata,
            inputs,
            cache: request.cache,
        })
    }

    /// A model of the price table: the request's, or the one its use case is routed to.
    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The use case of a routed (`"model": "auto"`) submission.
    #[must_use]
    pub fn use_case(&self) -> Option<&str> {
        self.use_case.as_deref()
    }

    #[must_use]
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The timezone whose off-peak window the jobs wait for.
    #[must_use]
    pub fn tz(&self) -> Tz {
        self.tz
    }

    #[must_use]
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    #[must_use]
    pub fn metadata(&self) -> Option<&Value> {
        self.metadata.as_ref()
    }

    /// Which cache the jobs use: resolve it with the tenant's mode.
    #[must_use]
    pub fn cache(&self) -> CacheChoice {
        self.cache
    }

    /// The inputs, in the request's order (one for `POST /v1/jobs` and templates).
    #[must_use]
    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }

    /// The inputs, taken out.
    #[must_use]
    pub fn into_inputs(self) -> Vec<Input> {
        self.inputs
    }
}

/// An input: a JSON object, then [`check_json`].
fn parse_input(field: &str, v: Value, max_bytes: usize) -> Result<Input, SubmissionError> {
    if !v.is_object() {
        return Err(SubmissionError::new(ErrorCode::InvalidInput, field, format!("{field} must be a JSON object")));
    }
    check_json(field, &v, max_bytes)?;
    Ok(Input(v))
}

/// An input or `metadata` value: within `max_bytes` serialised, no NUL in
/// any string or key, at most [`MAX_DEPTH`] levels deep, and every number
/// reads back from `jsonb` as itself.
fn check_json(field: &str, v: &Value, max_bytes: usize) -> Result<(), SubmissionError> {
    let size = v.to_string().len();
    if size > max_bytes {
        return Err(SubmissionError::new(
            ErrorCode::PayloadTooLarge,
            field,
            format!("{field} is {size} bytes; the limit is {max_bytes}"),
        ));
    }
    if jsonb::has_nul(v) {
        return Err(SubmissionError::new(
            ErrorCode::InvalidInput,
            field,
            format!("{field} contains a NUL (\\u0000) character, which cannot be stored"),
        ));
    }
    let nesting = depth(v);
    if nesting > MAX_DEPTH {
        return Err(SubmissionError::new(
            ErrorCode::InvalidInput,
            field,
            format!(
                "{field} nests arrays and objects {nesting} levels deep; at most {MAX_DEPTH} are allowed, \
                 so that every response carrying it stays within JSON parsers' nesting limits"
            ),
        ));
    }
    if let Some((path, e)) = jsonb::first_number_not_read_back(v) {
        let at = format!("{field}{path}");
        return Err(SubmissionError::new(
            ErrorCode::InvalidInput,
            at.clone(),
            format!("{at}: {e} (PostgreSQL stores numbers as plain decimals); send such a value as a string"),
        ));
    }
    Ok(())
}

/// How deep arrays and objects nest in `v`: 0 for a scalar, 1 for `{}`.
/// The recursion is bounded: a parsed request nests at most 128 levels.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Model routing: `"model": "auto"` with a `use_case` gets the model the
/// routing table names for it; returns the model and the use case to
/// record. A `use_case` without `auto`, or `auto` without a known
/// `use_case`, names `use_case`.
pub(crate) fn route_model(routes: &RouteTable, model: String, use_case: Option<String>) -> Result<(String, Option<String>), SubmissionError> {
    let known = || routes.use_cases().collect::<Vec<_>>().join(", ");
    match (model == AUTO_MODEL, use_case) {
        (false, None) => Ok((model, None)),
        (false, Some(_)) => Err(SubmissionError::new(
            ErrorCode::InvalidField,
            "use_case",
            "use_case is only for \"model\": \"auto\" (model routing); drop it or set model to \"auto\"",
        )),
        (true, None) => Err(SubmissionError::new(
            ErrorCode::InvalidField,
            "use_case",
            format!("\"model\": \"auto\" needs a use_case to route by; known use cases: {}", known()),
        )),
        (true, Some(u)) => match routes.model_for(&u) {
            Some(m) => Ok((m.to_owned(), Some(u))),
            None => Err(SubmissionError::new(
                ErrorCode::UnknownUseCase,
                "use_case",
                format!("unknown use_case '{}'; known use cases: {}", truncate(&u, MAX_MODEL_LEN), known()),
            )),
        },
    }
}

/// The model is one the price table knows.
pub(crate) fn check_model(prices: &PriceTable, model: &str) -> Result<(), SubmissionError> {
    if model.len() > MAX_MODEL_LEN || prices.price(model).is_none() {
        let known: Vec<&str> = prices.models().collect();
        return Err(SubmissionError::new(
            ErrorCode::UnknownModel,
            "model",
            format!("unknown model '{}'; known models: {}", truncate(model, MAX_MODEL_LEN), known.join(", ")),
        ));
    }
    Ok(())
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules<'a>(prices: &'a PriceTable, routes: &'a RouteTable) -> Rules<'a> {
        Rules { prices, routes, limits: Limits { max_input_bytes: 64, max_metadata_bytes: 32, max_bulk_inputs: 3 } }
    }

    fn parse(request: Request) -> Result<Submission, SubmissionError> {
        let (prices, routes) = (PriceTable::default(), RouteTable::default());
        Submission::parse(request, chrono_tz::Asia::Tokyo, &rules(&prices, &routes))
    }

    fn template(request: Request) -> Result<Submission, SubmissionError> {
        let (prices, routes) = (PriceTable::default(), RouteTable::default());
        Submission::parse_template(request, chrono_tz::Europe::Berlin, &rules(&prices, &routes))
    }

    fn one(input: Value) -> Request {
        Request::new("flux-dev", Inputs::One(input))
    }

    #[track_caller]
    fn refused(r: Result<Submission, SubmissionError>, code: ErrorCode, field: &str) -> String {
        let e = r.expect_err("refused");
        assert_eq!((e.code, e.field.as_str()), (code, field), "{e}");
        e.message
    }

    #[test]
    fn a_valid_submission_parses_into_typed_fields() {
        let request = Request {
            priority: Priority::Normal,
            user_id: Some("u-1".into()),
            metadata: Some(json!(["any", "json"])),
            cache: crate::semantic::CacheChoice::Mode(crate::semantic::CacheMode::Off),
            ..Request::new("flux-pro", Inputs::Many(vec![json!({"a": 1}), json!({"b": [2.5, null]})]))
        };
        let s = parse(request).unwrap();
        assert_eq!(s.model(), "flux-pro");
        assert_eq!(s.use_case(), None);
        assert_eq!(s.priority(), Priority::Normal);
        assert_eq!(s.tz(), chrono_tz::Asia::Tokyo, "the default timezone");
        assert_eq!(s.user_id(), Some("u-1"));
        assert_eq!(s.metadata(), Some(&json!(["any", "json"])));
        assert!(!s.cache().uses_cache());
        let inputs: Vec<Value> = s.into_inputs().into_iter().map(Input::into_value).collect();
        assert_eq!(inputs, vec![json!({"a": 1}), json!({"b": [2.5, null]})]);
    }

    #[test]
    fn the_request_timezone_wins_over_the_default_and_keeps_its_name() {
        let s = parse(Request { timezone: Some("America/Santiago".into()), ..one(json!({})) }).unwrap();
        assert_eq!(s.tz(), chrono_tz::America::Santiago);
        assert_eq!(s.tz().name(), "America/Santiago");
        let msg = refused(parse(Request { timezone: Some("Mars/Olympus".into()), ..one(json!({})) }), ErrorCode::InvalidTimezone, "timezone");
        assert_eq!(msg, "unknown IANA timezone 'Mars/Olympus'");
        refused(parse(Request { timezone: Some("UTC\0".into()), ..one(json!({})) }), ErrorCode::InvalidTimezone, "timezone");
    }

    #[test]
    fn every_zone_name_parses_to_a_zone_of_that_name() {
        // The API stores `tz().name()` as the job's timezone: it must be the
        // name the request gave.
        for tz in chrono_tz::TZ_VARIANTS {
            let s = parse(Request { timezone: Some(tz.name().to_owned()), ..one(json!({})) }).unwrap();
            assert_eq!(s.tz().name(), tz.name());
        }
    }

    #[test]
    fn auto_routes_by_use_case_and_anything_else_names_use_case() {
        let s = parse(Request { use_case: Some("print".into()), ..Request::new(AUTO_MODEL, Inputs::One(json!({}))) }).unwrap();
        assert_eq!((s.model(), s.use_case()), ("flux-pro", Some("print")));
        let msg = refused(parse(Request::new(AUTO_MODEL, Inputs::One(json!({})))), ErrorCode::InvalidField, "use_case");
        assert!(msg.contains("thumbnail"), "{msg}");
        let msg = refused(
            parse(Request { use_case: Some("thumbnails".into()), ..Request::new(AUTO_MODEL, Inputs::One(json!({}))) }),
            ErrorCode::UnknownUseCase,
            "use_case",
        );
        assert!(msg.starts_with("unknown use_case 'thumbnails'; known use cases: "), "{msg}");
        refused(parse(Request { use_case: Some("print".into()), ..one(json!({})) }), ErrorCode::InvalidField, "use_case");
    }

    #[test]
    fn an_unknown_model_is_named_and_cut_to_100_bytes() {
        let msg = refused(parse(Request::new("dall-e-3", Inputs::One(json!({})))), ErrorCode::UnknownModel, "model");
        assert_eq!(msg, "unknown model 'dall-e-3'; known models: flux-dev, flux-pro, flux-schnell, minimax-video, stable-audio");
        let long = "é".repeat(80);
        let msg = refused(parse(Request::new(long.clone(), Inputs::One(json!({})))), ErrorCode::UnknownModel, "model");
        assert!(msg.contains(&format!("'{}'", "é".repeat(50))), "{msg}");
    }

    #[test]
    fn inputs_must_be_objects_within_the_limit_without_nul() {
        assert!(refused(parse(one(json!([1]))), ErrorCode::InvalidInput, "input").contains("object"));
        let msg = refused(parse(one(json!({"p": "x".repeat(60)}))), ErrorCode::PayloadTooLarge, "input");
        assert_eq!(msg, "input is 68 bytes; the limit is 64");
        assert!(parse(one(json!({"p": "x".repeat(56)}))).is_ok(), "exactly the limit");
        assert!(refused(parse(one(json!({"a": [{"b": "\u{0}"}]}))), ErrorCode::InvalidInput, "input").contains("NUL"));
        let bulk = Request::new("flux-dev", Inputs::Many(vec![json!({}), json!({}), json!({"k\u{0}": 1})]));
        refused(parse(bulk), ErrorCode::InvalidInput, "inputs[2]");
    }

    /// An object nesting `levels` levels, arrays and objects in turn inside.
    fn nested(levels: usize) -> Value {
        let inner = (1..levels).fold(Value::Null, |v, i| if i % 2 == 0 { json!({"k": v}) } else { json!([v]) });
        json!({"k": inner})
    }

    #[test]
    fn depth_counts_levels_of_arrays_and_objects() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": []}], "c": 2})), 4);
    }

    #[test]
    fn inputs_and_metadata_nest_at_most_max_depth_levels() {
        let (prices, routes) = (PriceTable::default(), RouteTable::default());
        let rules = Rules { prices: &prices, routes: &routes, limits: Limits::default() };
        let parse = |r: Request| Submission::parse(r, chrono_tz::UTC, &rules);
        for levels in [MAX_DEPTH - 1, MAX_DEPTH] {
            let deepest = nested(levels);
            assert_eq!(depth(&deepest), levels);
            assert!(parse(Request { metadata: Some(deepest.clone()), ..one(deepest) }).is_ok(), "{levels} levels");
        }
        let too_deep = nested(MAX_DEPTH + 1);
        assert_eq!(depth(&too_deep), MAX_DEPTH + 1);
        let msg = refused(parse(one(too_deep.clone())), ErrorCode::InvalidInput, "input");
        assert!(msg.starts_with("input nests arrays and objects 101 levels deep; at most 100"), "{msg}");
        let bulk = Request::new("flux-dev", Inputs::Many(vec![json!({}), too_deep.clone()]));
        refused(parse(bulk), ErrorCode::InvalidInput, "inputs[1]");
        refused(parse(Request { metadata: Some(json!([too_deep])), ..one(json!({})) }), ErrorCode::InvalidInput, "metadata");
    }

    #[test]
    fn bulk_needs_one_to_the_limit_of_inputs() {
        let msg = refused(parse(Request::new("flux-dev", Inputs::Many(vec![]))), ErrorCode::InvalidField, "inputs");
        assert!(msg.contains("at least one"), "{msg}");
        let msg = refused(parse(Request::new("flux-dev", Inputs::Many(vec![json!({}); 4]))), ErrorCode::TooManyInputs, "inputs");
        assert_eq!(msg, "4 inputs; one bulk request takes at most 3");
        assert_eq!(parse(Request::new("flux-dev", Inputs::Many(vec![json!({}); 3]))).unwrap().inputs().len(), 3);
    }

    #[test]
    fn user_id_and_metadata_are_checked() {
        for bad in ["", "u\0", &"u".repeat(201)] {
            refused(parse(Request { user_id: Some(bad.into()), ..one(json!({})) }), ErrorCode::InvalidField, "user_id");
        }
        assert!(parse(Request { user_id: Some("u".repeat(200)), ..one(json!({})) }).is_ok());
        refused(parse(Request { metadata: Some(json!({"n": "x".repeat(30)})), ..one(json!({})) }), ErrorCode::PayloadTooLarge, "metadata");
        refused(parse(Request { metadata: Some(json!("\u{0}")), ..one(json!({})) }), ErrorCode::InvalidInput, "metadata");
    }

    #[test]
    fn faults_are_reported_in_one_order_inputs_first() {
        let request = Request {
            timezone: Some("Nowhere".into()),
            user_id: Some(String::new()),
            metadata: Some(json!("\u{0}")),
            ..Request::new("nope", Inputs::One(json!("not an object")))
        };
        refused(parse(request.clone()), ErrorCode::InvalidInput, "input");
        let request = Request { inputs: Inputs::One(json!({})), ..request };
        refused(parse(request.clone()), ErrorCode::UnknownModel, "model");
        let request = Request { model: "flux-dev".into(), ..request };
        refused(parse(request.clone()), ErrorCode::InvalidTimezone, "timezone");
        let request = Request { timezone: None, ..request };
        refused(parse(request.clone()), ErrorCode::InvalidField, "user_id");
        let request = Request { user_id: None, ..request };
        refused(parse(request), ErrorCode::InvalidInput, "metadata");
    }

    #[test]
    fn a_template_names_fields_under_job_and_needs_object_metadata() {
        let s = template(Request { metadata: Some(json!({"team": "a"})), ..one(json!({"a": 1})) }).unwrap();
        assert_eq!(s.tz(), chrono_tz::Europe::Berlin, "the schedule's timezone");
        refused(template(Request::new("nope", Inputs::One(json!({})))), ErrorCode::UnknownModel, "job.model");
        refused(template(one(json!([1]))), ErrorCode::InvalidInput, "job.input");
        let msg = refused(template(Request { metadata: Some(json!("x")), ..one(json!({})) }), ErrorCode::InvalidField, "job.metadata");
        assert!(msg.contains("object"), "{msg}");
        // A job's metadata may be any JSON.
        assert!(parse(Request { metadata: Some(json!("x")), ..one(json!({})) }).is_ok());
    }

    #[test]
    fn extreme_numbers_are_accepted_because_they_read_back() {
        let input = json!({"max": f64::MAX, "min": 5e-324, "neg_zero": -0.0, "big": u64::MAX, "small": i64::MIN, "e16": 1e16});
        let (prices, routes) = (PriceTable::default(), RouteTable::default());
        let rules = Rules { prices: &prices, routes: &routes, limits: Limits::default() };
        let request = Request { metadata: Some(json!([f64::MAX])), ..one(input.clone()) };
        let s = Submission::parse(request, chrono_tz::UTC, &rules).unwrap();
        assert_eq!(s.inputs()[0].as_value(), &input);
    }

    #[test]
    fn error_codes_are_the_apis_snake_case() {
        assert_eq!(ErrorCode::InvalidTimezone.as_str(), "invalid_timezone");
        assert_eq!(ErrorCode::PayloadTooLarge.to_string(), "payload_too_large");
        assert_eq!(ErrorCode::TooManyInputs.as_str(), "too_many_inputs");
    }

    #[test]
    fn truncate_keeps_whole_characters() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aéb", 3), "aé");
    }
}
