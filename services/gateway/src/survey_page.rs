//! The survey response page: the link in a survey e-mail opens it in a
//! browser, over plain HTTP/1.1 on the gateway's web listener (browsers do
//! not speak gRPC). It shows the question in the contact's language and
//! posts the answer, with the token from the link as the only credential,
//! to the CSAT service's `GetSurveyInvitation` and `SubmitSurveyResponse`.
//! Server-rendered HTML: no script, nothing from another origin, and the
//! token never leaves in a Referer header.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use concierge_proto::csat::csat_service_client::CsatServiceClient;
use concierge_proto::csat::{
    GetSurveyInvitationRequest, SubmitSurveyResponseRequest, SurveyInvitation,
};
use tonic::Code;

use crate::proxy::Backend;
use crate::review::transport;

/// Where the page is: what survey links point at, under the public URL.
pub const PATH: &str = "/surveys/respond";

/// How long the page waits for the CSAT service.
const DEADLINE: Duration = Duration::from_secs(10);

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    // A `.html` name escapes every value: the question, the labels and the
    // comment are the company's and the client's words, never markup.
    env.add_template("respond.html", include_str!("../templates/respond.html"))
        .expect("the page's template is checked by its test");
    env
});

/// The page's own words, by language.
fn words(lang: &str) -> minijinja::Value {
    match lang {
        "tr" => minijinja::context! {
            title => "Görüşünüz",
            about => "Konu",
            score => "Puanınız",
            send => "Gönder",
            until => "Bu bağlantı şu zamana kadar geçerli:",
            gone_title => "Bu bağlantı artık geçerli değil",
            gone => "Süresi dolmuş, kullanılmış ya da geri çekilmiş olabilir. Yine de teşekkür ederiz.",
            busy => "Şu anda yanıtınızı alamıyoruz; lütfen birazdan yeniden deneyin.",
        },
        _ => minijinja::context! {
            title => "Your feedback",
            about => "About",
            score => "Your score",
            send => "Send",
            until => "This link works until",
            gone_title => "This link no longer works",
            gone => "It may have expired, been used already or been withdrawn. Thank you all the same.",
            busy => "We cannot take your answer right now; please try again in a moment.",
        },
    }
}

/// "tr" when the browser prefers Turkish, else "en": for the pages shown
/// before the survey's own language is known.
fn browser_language(headers: &HeaderMap) -> &'static str {
    let preferred = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if preferred.starts_with("tr") {
        "tr"
    } else {
        "en"
    }
}

#[derive(Clone)]
struct Page {
    csat: Option<Backend>,
}

/// The page's routes; `csat` is where the CSAT service runs (none: every
/// link reads as not working).
pub fn router(csat: Option<Backend>) -> axum::Router {
    axum::Router::new()
        .route(PATH, axum::routing::get(show).post(answer))
        .with_state(Arc::new(Page { csat }))
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn render(status: StatusCode, context: minijinja::Value) -> Response {
    match TEMPLATES
        .get_template("respond.html")
        .and_then(|t| t.render(context))
    {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "rendering the survey page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "").into_response()
        }
    }
}

fn gone(lang: &str) -> Response {
    render(
        StatusCode::NOT_FOUND,
        minijinja::context! { page => "gone", lang, t => words(lang) },
    )
}

fn busy(lang: &str) -> Response {
    let t = words(lang);
    let message = t.get_attr("busy").unwrap_or_default();
    render(
        StatusCode::SERVICE_UNAVAILABLE,
        minijinja::context! { page => "thanks", lang, t, message },
    )
}

impl Page {
    fn client(&self) -> Option<CsatServiceClient<crate::review::Transport>> {
        self.csat
            .as_ref()
            .map(|b| CsatServiceClient::new(transport(b)))
    }

    async fn invitation(&self, token: &str) -> Result<Option<SurveyInvitation>, ()> {
        let Some(mut client) = self.client() else {
            return Ok(None);
        };
        let request = GetSurveyInvitationRequest {
            response_token: token.to_string(),
        };
        match tokio::time::timeout(DEADLINE, client.get_survey_invitation(request)).await {
            Ok(Ok(r)) => Ok(Some(r.into_inner())),
            Ok(Err(s)) if matches!(s.code(), Code::NotFound | Code::InvalidArgument) => Ok(None),
            Ok(Err(s)) => {
                tracing::warn!(code = ?s.code(), message = s.message(), "the survey page could not read a link");
                Err(())
            }
            Err(_) => Err(()),
        }
    }
}

fn form(
    invitation: &SurveyInvitation,
    token: &str,
    chosen: Option<i32>,
    comment: &str,
    error: Option<String>,
) -> Response {
    let lang = if invitation.language_code == "tr" {
        "tr"
    } else {
        "en"
    };
    let expires = invitation
        .expire_time
        .as_ref()
        .and_then(concierge_common::clock::from_proto)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    // Bounded by the kinds' scales (at most 0-10).
    let scores: Vec<i32> = (invitation.min_score.max(0)..=invitation.max_score.min(10)).collect();
    render(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        minijinja::context! {
            page => "form",
            lang,
            t => words(lang),
            action => PATH,
            token,
            request_id => uuid::Uuid::now_v7().to_string(),
            question => invitation.question,
            case_title => invitation.case_title,
            scores,
            chosen,
            low => invitation.scale_low_label,
            high => invitation.scale_high_label,
            comment_enabled => invitation.comment_enabled,
            comment_prompt => invitation.comment_prompt,
            comment,
            error,
            expires,
        },
    )
}

#[derive(serde::Deserialize)]
struct Link {
    token: Option<String>,
}

async fn show(
    State(page): State<Arc<Page>>,
    headers: HeaderMap,
    Query(link): Query<Link>,
) -> Response {
    let lang = browser_language(&headers);
    let Some(token) = link.token.filter(|t| !t.is_empty() && t.len() <= 64) else {
        return gone(lang);
    };
    match page.invitation(&token).await {
        Ok(Some(invitation)) => form(&invitation, &token, None, "", None),
        Ok(None) => gone(lang),
        Err(()) => busy(lang),
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    token: String,
    score: Option<String>,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    language_code: String,
    #[serde(default)]
    request_id: String,
}

async fn answer(
    State(page): State<Arc<Page>>,
    headers: HeaderMap,
    Form(answer): Form<Answer>,
) -> Response {
    let lang = browser_language(&headers);
    if answer.token.is_empty() || answer.token.len() > 64 {
        return gone(lang);
    }
    let Some(mut client) = page.client() else {
        return gone(lang);
    };
    let score = answer
        .score
        .as_deref()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let request = SubmitSurveyResponseRequest {
        response_token: answer.token.clone(),
        // A missing score is refused by the service as off the scale.
        score: score.unwrap_or(-1),
        comment: answer.comment.chars().take(4001).collect(),
        language_code: answer.language_code.chars().take(16).collect(),
        request_id: answer.request_id.chars().take(64).collect(),
    };
    match tokio::time::timeout(DEADLINE, client.submit_survey_response(request)).await {
        Ok(Ok(r)) => {
            let lang = if answer.language_code == "tr" {
                "tr"
            } else {
                "en"
            };
            render(
                StatusCode::OK,
                minijinja::context! {
                    page => "thanks",
                    lang,
                    t => words(lang),
                    message => r.into_inner().thank_you_message,
                },
            )
        }
        Ok(Err(s)) if s.code() == Code::InvalidArgument => {
            match page.invitation(&answer.token).await {
                Ok(Some(invitation)) => {
                    let why = s
                        .message()
                        .trim_start_matches("invalid argument: ")
                        .to_string();
                    form(
                        &invitation,
                        &answer.token,
                        score,
                        &answer.comment,
                        Some(why),
                    )
                }
                Ok(None) => gone(lang),
                Err(()) => busy(lang),
            }
        }
        Ok(Err(s)) if s.code() == Code::NotFound => gone(lang),
        Ok(Err(s)) => {
            tracing::warn!(code = ?s.code(), message = s.message(), "the survey page could not record an answer");
            busy(lang)
        }
        Err(_) => busy(lang),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_it_shows() {
        let invitation = SurveyInvitation {
            kind: 1,
            min_score: 1,
            max_score: 5,
            language_code: "tr".into(),
            question: "<script>alert(1)</script> Memnun musunuz?".into(),
            case_title: "\"Fatura\" & <b>ödeme</b>".into(),
            comment_enabled: true,
            comment_prompt: "Yorum".into(),
            ..Default::default()
        };
        let response = form(&invitation, "tok\"en", None, "", None);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::REFERRER_POLICY],
            "no-referrer",
            "the token in the URL does not travel on"
        );
        let body = TEMPLATES
            .get_template("respond.html")
            .unwrap()
            .render(minijinja::context! {
                page => "form", lang => "tr", t => words("tr"), token => "tok\"en",
                question => invitation.question, case_title => invitation.case_title,
                scores => vec![1, 2], comment_enabled => true,
            })
            .unwrap();
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains("&lt;script&gt;"), "{body}");
        assert!(
            body.contains("&quot;Fatura&quot; &amp; &lt;b&gt;"),
            "{body}"
        );
        assert!(body.contains("value=\"tok&quot;en\""), "{body}");
        assert!(body.contains("<html lang=\"tr\">") && body.contains("Gönder"));
    }
}
