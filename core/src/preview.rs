//! Preview first, full quality on demand (issue #19; the provider's cost
//! guide: "generate low-quality first, high-quality on demand; most
//! thumbnails are never clicked").
//!
//! Two parses live here, beside [`crate::submission`]'s and on its rules:
//!
//! - [`parse_preview`]: the `"preview"` of a submission, `{"model": ...}` or
//!   `{"use_case": ...}`, which names the cheap model the job runs on; the
//!   submission's own model and use case become the job's upgrade target.
//! - [`parse_upgrade`]: the body of `POST /v1/jobs/{id}/upgrade`, which
//!   makes a new job (a child) from a succeeded one: the model or use case
//!   the body names (or else the parent's recorded upgrade target), the
//!   parent's input with the body's `input` fields merged over it, the
//!   parent's timezone and user, and `low` priority unless the body says
//!   otherwise. The child is then a [`Submission`] like any other, checked
//!   by [`Submission::parse`]: limits, model and routing, the merged input.
//!
//! ```
//! use offpeak_core::prices::{PriceTable, RouteTable};
//! use offpeak_core::preview::{parse_preview, parse_upgrade, Parent, UpgradeRequest};
//! use offpeak_core::submission::{Limits, Rules};
//! use serde_json::json;
//!
//! let (prices, routes) = (PriceTable::default(), RouteTable::default());
//! let rules = Rules { prices: &prices, routes: &routes, limits: Limits::default() };
//! let preview = parse_preview(None, Some("thumbnail".into()), &rules)?;
//! assert_eq!((preview.model(), preview.use_case()), ("flux-schnell", Some("thumbnail")));
//!
//! let input = json!({"prompt": "a red fox", "width": 256});
//! let parent = Parent { input: &input, user_id: None, metadata: None, target: Some(("flux-pro", None)) };
//! let body = UpgradeRequest { input: Some(json!({"width": 1024})), ..Default::default() };
//! let child = parse_upgrade(body, &parent, chrono_tz::UTC, &rules)?;
//! assert_eq!(child.submission().model(), "flux-pro");
//! assert_eq!(child.submission().inputs()[0].as_value(), &json!({"prompt": "a red fox", "width": 1024}));
//! # Ok::<(), offpeak_core::submission::SubmissionError>(())
//! ```

use chrono_tz::Tz;
use serde_json::Value;

use crate::job::Priority;
use crate::submission::{check_model, route_model, ErrorCode, Inputs, Request, Rules, Submission, SubmissionError, AUTO_MODEL};

/// A checked preview: the model the job runs on, and the use case it was
/// routed from (`{"use_case": ...}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    model: String,
    use_case: Option<String>,
}

impl Preview {
    /// A model of the price table.
    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }

    #[must_use]
    pub fn use_case(&self) -> Option<&str> {
        self.use_case.as_deref()
    }
}

fn error(code: ErrorCode, field: &str, message: impl Into<String>) -> SubmissionError {
    SubmissionError { code, field: field.to_owned(), message: message.into() }
}

/// Parses a submission's `"preview"`: exactly one of a `model` of the price
/// table or a `use_case` of the routing table. Errors name
/// `preview.model` (an unknown model, `auto`, neither given) or
/// `preview.use_case` (an unknown use case, both given).
///
/// # Errors
/// As above.
pub fn parse_preview(model: Option<String>, use_case: Option<String>, rules: &Rules<'_>) -> Result<Preview, SubmissionError> {
    match (model, use_case) {
        (Some(_), Some(_)) => Err(error(
            ErrorCode::InvalidField,
            "preview.use_case",
            "a preview names its model or a use_case to route by, not both",
        )),
        (None, None) => Err(error(
            ErrorCode::InvalidField,
            "preview.model",
            "a preview needs a model (e.g. \"flux-schnell\") or a use_case (e.g. \"thumbnail\") to run on",
        )),
        (Some(model), None) => {
            if model == AUTO_MODEL {
                return Err(error(
                    ErrorCode::InvalidField,
                    "preview.model",
                    "a preview routes by {\"use_case\": ...}, not by \"model\": \"auto\"",
                ));
            }
            check_model(rules.prices, &model).map_err(|e| SubmissionError { field: "preview.model".into(), ..e })?;
            Ok(Preview { model, use_case: None })
        }
        (None, Some(use_case)) => {
            let (model, use_case) = route_model(rules.routes, AUTO_MODEL.to_owned(), Some(use_case))
                .map_err(|e| SubmissionError { field: "preview.use_case".into(), ..e })?;
            Ok(Preview { model, use_case })
        }
    }
}

/// The body of `POST /v1/jobs/{id}/upgrade`, as given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpgradeRequest {
    /// A model of the price table, or `auto` with `use_case`.
    pub model: Option<String>,
    /// Model routing, as `"model": "auto"` with `use_case` on a submission;
    /// alone, it means `auto`.
    pub use_case: Option<String>,
    /// Fields merged over the parent's input (each top-level field replaces
    /// the parent's of that name).
    pub input: Option<Value>,
    /// `low` when absent: the full-quality render waits for the off-peak price.
    pub priority: Option<Priority>,
    /// The parent's when absent.
    pub metadata: Option<Value>,
}

/// What an upgrade takes from the job it upgrades.
#[derive(Debug, Clone, Copy)]
pub struct Parent<'a> {
    /// Always a JSON object (it was parsed as one).
    pub input: &'a Value,
    pub user_id: Option<&'a str>,
    pub metadata: Option<&'a Value>,
    /// A preview's recorded upgrade target: model and use case.
    pub target: Option<(&'a str, Option<&'a str>)>,
}

/// A parsed upgrade: the child's submission, and the use case to record for
/// it.
#[derive(Debug, Clone, PartialEq)]
pub struct Upgrade {
    submission: Submission,
    use_case: Option<String>,
}

impl Upgrade {
    /// The child as a submission of its own: model, priority, timezone,
    /// user, metadata and its one (merged) input.
    #[must_use]
    pub fn submission(&self) -> &Submission {
        &self.submission
    }

    /// The child's use case: the one it was routed by, or the recorded
    /// target's (whose model was routed when the preview was submitted).
    #[must_use]
    pub fn use_case(&self) -> Option<&str> {
        self.use_case.as_deref()
    }

    #[must_use]
    pub fn into_submission(self) -> Submission {
        self.submission
    }
}

/// Parses an upgrade of `parent` (whose timezone is `tz`) by `rules`.
///
/// The model: the body's `model` (with `use_case` for `auto`), or its
/// `use_case` alone (routed), or else the parent's recorded target (a
/// preview's), exactly as recorded. Neither in the body nor recorded is a
/// 422 `invalid_field` naming `model`. Then the child is parsed as a
/// submission (`model`, `use_case`, `input`, `metadata` name the fields at
/// fault), so it obeys every rule a submitted job does.
///
/// # Errors
/// An `input` that is not an object (`invalid_input`, `input`), no model to
/// upgrade to, or any fault [`Submission::parse`] finds in the child.
pub fn parse_upgrade(body: UpgradeRequest, parent: &Parent<'_>, tz: Tz, rules: &Rules<'_>) -> Result<Upgrade, SubmissionError> {
    let input = merge_input(parent.input, body.input)?;
    let (model, use_case, recorded_use_case) = match (body.model, body.use_case, parent.target) {
        (Some(model), use_case, _) => (model, use_case, None),
        (None, Some(use_case), _) => (AUTO_MODEL.to_owned(), Some(use_case), None),
        (None, None, Some((model, use_case))) => (model.to_owned(), None, use_case.map(str::to_owned)),
        (None, None, None) => {
            return Err(error(
                ErrorCode::InvalidField,
                "model",
                "this job records no upgrade target (it was not submitted with \"preview\"): name the model to upgrade \
                 to, or a use_case to route by",
            ))
        }
    };
    let request = Request {
        use_case,
        priority: body.priority.unwrap_or_default(),
        user_id: parent.user_id.map(str::to_owned),
        metadata: body.metadata.or_else(|| parent.metadata.cloned()),
        ..Request::new(model, Inputs::One(input))
    };
    let submission = Submission::parse(request, tz, rules)?;
    let use_case = recorded_use_case.or_else(|| submission.use_case().map(str::to_owned));
    Ok(Upgrade { submission, use_case })
}

/// The parent's input with `over`'s top-level fields put in its place (a
/// field `over` sets to `null` is sent as `null`).
fn merge_input(parent: &Value, over: Option<Value>) -> Result<Value, SubmissionError> {
    let mut merged = match parent {
        Value::Object(o) => o.clone(),
        _ => serde_json::Map::new(),
    };
    match over {
        None => {}
        Some(Value::Object(fields)) => merged.extend(fields),
        Some(_) => {
            return Err(error(
                ErrorCode::InvalidInput,
                "input",
                "input must be a JSON object: its fields replace the fields of that name in the job's input",
            ))
        }
    }
    Ok(Value::Object(merged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prices::{PriceTable, RouteTable};
    use crate::submission::Limits;
    use serde_json::json;

    fn with_rules<T>(f: impl FnOnce(&Rules<'_>) -> T) -> T {
        let (prices, routes) = (PriceTable::default(), RouteTable::default());
        f(&Rules { prices: &prices, routes: &routes, limits: Limits { max_input_bytes: 64, ..Limits::default() } })
    }

    #[track_caller]
    fn refused<T: std::fmt::Debug>(r: Result<T, SubmissionError>, code: ErrorCode, field: &str) -> String {
        let e = r.expect_err("refused");
        assert_eq!((e.code, e.field.as_str()), (code, field), "{e}");
        e.message
    }

    #[test]
    fn a_preview_names_a_model_or_a_use_case_and_nothing_else() {
        with_rules(|rules| {
            let p = parse_preview(Some("flux-schnell".into()), None, rules).unwrap();
            assert_eq!((p.model(), p.use_case()), ("flux-schnell", None));
            let p = parse_preview(None, Some("preview".into()), rules).unwrap();
            assert_eq!((p.model(), p.use_case()), ("flux-schnell", Some("preview")));
            let msg = refused(parse_preview(Some("dall-e".into()), None, rules), ErrorCode::UnknownModel, "preview.model");
            assert!(msg.contains("known models"), "{msg}");
            refused(parse_preview(Some("auto".into()), None, rules), ErrorCode::InvalidField, "preview.model");
            let msg = refused(parse_preview(None, Some("mural".into()), rules), ErrorCode::UnknownUseCase, "preview.use_case");
            assert!(msg.contains("thumbnail"), "{msg}");
            refused(parse_preview(Some("flux-schnell".into()), Some("thumbnail".into()), rules), ErrorCode::InvalidField, "preview.use_case");
            refused(parse_preview(None, None, rules), ErrorCode::InvalidField, "preview.model");
        });
    }

    fn parent<'a>(input: &'a Value, target: Option<(&'a str, Option<&'a str>)>) -> Parent<'a> {
        Parent { input, user_id: Some("u-1"), metadata: Some(input), target }
    }

    #[test]
    fn an_upgrade_merges_its_input_over_the_parents_and_keeps_its_user_timezone_and_metadata() {
        let input = json!({"prompt": "fox", "width": 256, "style": "sketch"});
        let body = UpgradeRequest { model: Some("flux-pro".into()), input: Some(json!({"width": 1024, "style": null})), ..Default::default() };
        let up = with_rules(|r| parse_upgrade(body, &parent(&input, None), chrono_tz::Asia::Tokyo, r)).unwrap();
        let s = up.submission();
        assert_eq!((s.model(), s.use_case(), up.use_case()), ("flux-pro", None, None));
        assert_eq!(s.inputs()[0].as_value(), &json!({"prompt": "fox", "width": 1024, "style": null}));
        assert_eq!((s.priority(), s.tz(), s.user_id()), (Priority::Low, chrono_tz::Asia::Tokyo, Some("u-1")));
        assert_eq!(s.metadata(), Some(&input), "the parent's metadata");
        let body = UpgradeRequest {
            model: Some("flux-dev".into()),
            priority: Some(Priority::Normal),
            metadata: Some(json!({"k": 1})),
            ..Default::default()
        };
        let up = with_rules(|r| parse_upgrade(body, &parent(&input, None), chrono_tz::UTC, r)).unwrap();
        assert_eq!(up.submission().inputs()[0].as_value(), &input, "no input: the parent's");
        assert_eq!((up.submission().priority(), up.submission().metadata()), (Priority::Normal, Some(&json!({"k": 1}))));
    }

    #[test]
    fn without_a_model_an_upgrade_routes_its_use_case_or_takes_the_recorded_target() {
        let input = json!({"p": 1});
        let body = UpgradeRequest { use_case: Some("print".into()), ..Default::default() };
        let up = with_rules(|r| parse_upgrade(body, &parent(&input, Some(("flux-dev", None))), chrono_tz::UTC, r)).unwrap();
        assert_eq!((up.submission().model(), up.use_case()), ("flux-pro", Some("print")), "the body wins over the record");
        let recorded = Some(("flux-dev", Some("product-image")));
        let up = with_rules(|r| parse_upgrade(UpgradeRequest::default(), &parent(&input, recorded), chrono_tz::UTC, r)).unwrap();
        assert_eq!((up.submission().model(), up.use_case()), ("flux-dev", Some("product-image")), "exactly as recorded");
        let msg = with_rules(|r| refused(parse_upgrade(UpgradeRequest::default(), &parent(&input, None), chrono_tz::UTC, r), ErrorCode::InvalidField, "model"));
        assert!(msg.contains("preview"), "{msg}");
    }

    #[test]
    fn the_child_obeys_the_rules_of_a_submission() {
        let input = json!({"p": "x".repeat(40)});
        let up = |body: UpgradeRequest| with_rules(|r| parse_upgrade(body, &parent(&input, None), chrono_tz::UTC, r));
        refused(up(UpgradeRequest { model: Some("dall-e".into()), ..Default::default() }), ErrorCode::UnknownModel, "model");
        refused(up(UpgradeRequest { model: Some("auto".into()), ..Default::default() }), ErrorCode::InvalidField, "use_case");
        refused(up(UpgradeRequest { use_case: Some("mural".into()), ..Default::default() }), ErrorCode::UnknownUseCase, "use_case");
        refused(
            up(UpgradeRequest { model: Some("flux-dev".into()), use_case: Some("print".into()), ..Default::default() }),
            ErrorCode::InvalidField,
            "use_case",
        );
        let model = || Some("flux-pro".to_owned());
        refused(up(UpgradeRequest { model: model(), input: Some(json!([1])), ..Default::default() }), ErrorCode::InvalidInput, "input");
        refused(up(UpgradeRequest { model: model(), input: Some(json!({"q": "y".repeat(30)})), ..Default::default() }), ErrorCode::PayloadTooLarge, "input");
        refused(up(UpgradeRequest { model: model(), input: Some(json!({"q": "\u{0}"})), ..Default::default() }), ErrorCode::InvalidInput, "input");
        refused(up(UpgradeRequest { model: model(), metadata: Some(json!("\u{0}")), ..Default::default() }), ErrorCode::InvalidInput, "metadata");
    }
}
