//! The texts a survey is sent and shown in: a template's texts per
//! language, checked when the template is written (a known language, known
//! placeholders, a link in the body), and rendered into the e-mail. The
//! e-mail's subject and body are small templates of their own; the rest is
//! plain text.

use std::collections::BTreeSet;

use concierge_common::error::{Error, Result, Violations};
use concierge_common::mail::LANGUAGES;
use concierge_proto::csat::{LocalizedSurveyText, SurveyKind, SurveyTemplate, survey_response};

/// The placeholders an e-mail subject or body may use.
pub const PLACEHOLDERS: &[&str] = &[
    "link",
    "case.title",
    "account",
    "contact.name",
    "expire_date",
];

/// At most this many texts (one per language) in a template.
const MAX_TEXTS: usize = 10;
/// Longest e-mail body or question a template may carry, in characters.
const MAX_BODY: usize = 10_000;
const MAX_LINE: usize = 500;
/// Work a template's rendering may take: far more than any e-mail needs,
/// far less than a loop a careless template could ask for.
const FUEL: u64 = 50_000;

const DEFAULT_SUBJECT_EN: &str = "How did we do? {{ case.title }}";
const DEFAULT_BODY_EN: &str = "Hello {{ contact.name }},\n\nWe recently resolved your request \"{{ case.title }}\". Would you tell us how we did? It takes a few seconds:\n\n{{ link }}\n\nThe link works once, until {{ expire_date }}.\n\nThank you,\nYour Concierge team\n";
const DEFAULT_SUBJECT_TR: &str = "Nasıldık? {{ case.title }}";
const DEFAULT_BODY_TR: &str = "Merhaba {{ contact.name }},\n\n\"{{ case.title }}\" talebinizi kısa süre önce çözdük. Nasıl olduğumuzu bize söyler misiniz? Birkaç saniyenizi alır:\n\n{{ link }}\n\nBağlantı {{ expire_date }} tarihine kadar bir kez kullanılabilir.\n\nTeşekkürler,\nConcierge ekibiniz\n";

/// The lowest and highest score of a kind's scale.
pub fn scale(kind: SurveyKind) -> Option<(i32, i32)> {
    match kind {
        SurveyKind::Csat15 => Some((1, 5)),
        SurveyKind::Nps010 => Some((0, 10)),
        SurveyKind::Ces17 => Some((1, 7)),
        SurveyKind::Unspecified => None,
    }
}

/// How a score on a kind's scale reads: CSAT 4-5 / 3 / 1-2, NPS 9-10 /
/// 7-8 / 0-6, CES 5-7 / 4 / 1-3.
pub fn sentiment(kind: SurveyKind, score: i32) -> survey_response::Sentiment {
    use survey_response::Sentiment::{Negative, Neutral, Positive};
    let (positive, neutral) = match kind {
        SurveyKind::Csat15 => (4, 3),
        SurveyKind::Nps010 => (9, 7),
        SurveyKind::Ces17 => (5, 4),
        SurveyKind::Unspecified => return survey_response::Sentiment::Unspecified,
    };
    if score >= positive {
        Positive
    } else if score >= neutral {
        Neutral
    } else {
        Negative
    }
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env
}

/// Why `source` is not an e-mail template: a syntax error, or a placeholder
/// that is not one of [`PLACEHOLDERS`].
fn template_problem(source: &str) -> Option<String> {
    let env = environment();
    let template = match env.template_from_str(source) {
        Ok(t) => t,
        Err(e) => {
            return Some(format!(
                "not a valid template: {}",
                e.detail().unwrap_or("syntax error")
            ));
        }
    };
    let unknown: BTreeSet<String> = template
        .undeclared_variables(true)
        .into_iter()
        .filter(|v| !PLACEHOLDERS.contains(&v.as_str()))
        .collect();
    if unknown.is_empty() {
        None
    } else {
        Some(format!(
            "unknown placeholder {}; known: {}",
            unknown
                .iter()
                .map(|u| format!("{{{{{u}}}}}"))
                .collect::<Vec<_>>()
                .join(", "),
            PLACEHOLDERS
                .iter()
                .map(|p| format!("{{{{{p}}}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Checks a template's texts, naming each bad field under `survey_template`.
pub fn check_template(t: &SurveyTemplate, v: &mut Violations) {
    if t.texts.is_empty() || t.texts.len() > MAX_TEXTS {
        v.add(
            "survey_template.texts",
            format!(
                "1 to {MAX_TEXTS} texts, one per language ({})",
                LANGUAGES.join(", ")
            ),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, text) in t.texts.iter().enumerate().take(MAX_TEXTS) {
        let field = |f: &str| format!("survey_template.texts[{i}].{f}");
        if !LANGUAGES.contains(&text.language_code.as_str()) {
            v.add(
                field("language_code"),
                format!("a language surveys are sent in: {}", LANGUAGES.join(", ")),
            );
        } else if !seen.insert(text.language_code.clone()) {
            v.add(field("language_code"), "one text per language");
        }
        if text.question.trim().is_empty() || text.question.chars().count() > MAX_LINE {
            v.add(
                field("question"),
                format!("required: 1 to {MAX_LINE} characters"),
            );
        }
        for (f, value) in [
            ("scale_low_label", &text.scale_low_label),
            ("scale_high_label", &text.scale_high_label),
            ("comment_prompt", &text.comment_prompt),
            ("thank_you_message", &text.thank_you_message),
        ] {
            if value.chars().count() > MAX_LINE {
                v.add(field(f), format!("at most {MAX_LINE} characters"));
            }
        }
        if text.email_subject.chars().count() > MAX_LINE || text.email_subject.contains('\n') {
            v.add(
                field("email_subject"),
                format!("one line of at most {MAX_LINE} characters"),
            );
        } else if let Some(why) = template_problem(&text.email_subject) {
            v.add(field("email_subject"), why);
        }
        if text.email_body.chars().count() > MAX_BODY {
            v.add(
                field("email_body"),
                format!("at most {MAX_BODY} characters"),
            );
        } else if let Some(why) = template_problem(&text.email_body) {
            v.add(field("email_body"), why);
        } else if !text.email_body.is_empty()
            && !environment()
                .template_from_str(&text.email_body)
                .map(|t| t.undeclared_variables(true).contains("link"))
                .unwrap_or(false)
        {
            v.add(
                field("email_body"),
                "must contain {{link}}, the response link (or be empty for the standard e-mail)",
            );
        }
    }
    if !t.texts.is_empty()
        && !t
            .texts
            .iter()
            .any(|x| x.language_code == t.default_language_code)
    {
        v.add(
            "survey_template.default_language_code",
            "the language of one of the texts, used when the contact's is missing",
        );
    }
}

/// The text of `t` for a contact who reads `language`: theirs if the
/// template has it, else the template's default.
pub fn pick<'a>(t: &'a SurveyTemplate, language: &str) -> Option<&'a LocalizedSurveyText> {
    let language = concierge_common::mail::language(language);
    t.texts
        .iter()
        .find(|x| x.language_code == language)
        .or_else(|| {
            t.texts
                .iter()
                .find(|x| x.language_code == t.default_language_code)
        })
        .or_else(|| t.texts.first())
}

/// What fills an e-mail's placeholders.
pub struct MailFacts<'a> {
    pub link: &'a str,
    pub case_title: &'a str,
    pub account: &'a str,
    pub contact_name: &'a str,
    pub expire_date: &'a str,
}

/// The e-mail's subject and body from `text`, the standard ones of its
/// language where it has none.
pub fn render_mail(text: &LocalizedSurveyText, facts: &MailFacts<'_>) -> Result<(String, String)> {
    let turkish = text.language_code == "tr";
    let subject = match (text.email_subject.as_str(), turkish) {
        ("", true) => DEFAULT_SUBJECT_TR,
        ("", false) => DEFAULT_SUBJECT_EN,
        (s, _) => s,
    };
    let body = match (text.email_body.as_str(), turkish) {
        ("", true) => DEFAULT_BODY_TR,
        ("", false) => DEFAULT_BODY_EN,
        (b, _) => b,
    };
    let env = environment();
    let context = minijinja::context! {
        link => facts.link,
        case => minijinja::context! { title => facts.case_title },
        account => facts.account,
        contact => minijinja::context! { name => facts.contact_name },
        expire_date => facts.expire_date,
    };
    let render = |source: &str| {
        env.render_str(source, &context)
            .map_err(|e| Error::internal(anyhow::anyhow!("rendering a survey e-mail: {e}")))
    };
    Ok((render(subject)?.trim().to_string(), render(body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(subject: &str, body: &str) -> SurveyTemplate {
        SurveyTemplate {
            display_name: "t".into(),
            kind: SurveyKind::Csat15 as i32,
            default_language_code: "en".into(),
            texts: vec![LocalizedSurveyText {
                language_code: "en".into(),
                question: "How satisfied are you?".into(),
                email_subject: subject.into(),
                email_body: body.into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn problems(t: &SurveyTemplate) -> Vec<String> {
        let mut v = Violations::new();
        check_template(t, &mut v);
        match v.into_result() {
            Ok(()) => vec![],
            Err(e) => vec![format!("{e:?}")],
        }
    }

    #[test]
    fn placeholders_are_the_known_ones_and_the_body_carries_the_link() {
        assert!(problems(&template("About {{ case.title }}", "Answer: {{link}}")).is_empty());
        assert!(
            problems(&template("", "")).is_empty(),
            "the standard e-mail"
        );
        let unknown = problems(&template("{{ case.secret }}", "{{ link }}"));
        assert!(
            unknown[0].contains("email_subject") && unknown[0].contains("case.secret"),
            "{unknown:?}"
        );
        let linkless = problems(&template("", "Thanks"));
        assert!(linkless[0].contains("{{link}}"), "{linkless:?}");
        let broken = problems(&template("{% if %}", "{{ link }}"));
        assert!(broken[0].contains("not a valid template"), "{broken:?}");
    }

    #[test]
    fn a_language_surveys_are_not_sent_in_is_refused() {
        let mut t = template("", "");
        t.texts[0].language_code = "xx".into();
        let p = problems(&t);
        assert!(p[0].contains("texts[0].language_code"), "{p:?}");
    }

    #[test]
    fn a_runaway_template_is_stopped_by_its_fuel() {
        let text = LocalizedSurveyText {
            language_code: "en".into(),
            email_body: "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}{{ link }}".into(),
            ..Default::default()
        };
        let facts = MailFacts {
            link: "l",
            case_title: "c",
            account: "a",
            contact_name: "n",
            expire_date: "d",
        };
        assert!(render_mail(&text, &facts).is_err());
    }

    #[test]
    fn the_standard_mail_reads_in_english_and_turkish() {
        let facts = MailFacts {
            link: "https://x/surveys/respond?token=abc",
            case_title: "Circuit down",
            account: "Acme",
            contact_name: "Deniz",
            expire_date: "2026-11-16",
        };
        let mut text = LocalizedSurveyText {
            language_code: "en".into(),
            ..Default::default()
        };
        let (subject, body) = render_mail(&text, &facts).unwrap();
        assert_eq!(subject, "How did we do? Circuit down");
        assert!(
            body.starts_with("Hello Deniz,") && body.contains(facts.link),
            "{body}"
        );
        text.language_code = "tr".into();
        let (subject, body) = render_mail(&text, &facts).unwrap();
        assert_eq!(subject, "Nasıldık? Circuit down");
        assert!(body.contains("2026-11-16 tarihine kadar"), "{body}");
    }

    #[test]
    fn sentiment_reads_each_scale() {
        use survey_response::Sentiment::*;
        let read = |k, s| sentiment(k, s);
        assert_eq!(read(SurveyKind::Csat15, 4), Positive);
        assert_eq!(read(SurveyKind::Csat15, 3), Neutral);
        assert_eq!(read(SurveyKind::Csat15, 2), Negative);
        assert_eq!(read(SurveyKind::Nps010, 9), Positive);
        assert_eq!(read(SurveyKind::Nps010, 7), Neutral);
        assert_eq!(read(SurveyKind::Nps010, 6), Negative);
        assert_eq!(read(SurveyKind::Ces17, 5), Positive);
        assert_eq!(read(SurveyKind::Ces17, 4), Neutral);
        assert_eq!(read(SurveyKind::Ces17, 3), Negative);
    }
}
