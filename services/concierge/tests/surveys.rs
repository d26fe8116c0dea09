//! A survey as a client meets it: a case resolved in `concierge dev`, the
//! survey e-mail found in the data directory's mail folder as a tester
//! finds it, and its link answered in a real headless Chromium, without a
//! login. Waits are on conditions, never on timers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use concierge_common::testing;
use concierge_proto::concierge::cases::v1 as cases;
use concierge_proto::csat;
use concierge_proto::customers;

mod support;
use support::{BIN, Proc};

/// `concierge dev` in `dir`: its gateway, web pages and admin key.
struct Dev {
    _proc: Proc,
    gateway: String,
    web: String,
    key: String,
}

fn start_dev(dir: &Path) -> Dev {
    let mut child = Command::new(BIN)
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start concierge dev");
    let stdout = child.stdout.take().unwrap();
    let (mut gateway, mut web, mut key) = (String::new(), String::new(), String::new());
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let line = line.trim();
        if let Some(u) = line.strip_prefix("gateway listening on ") {
            gateway = u.to_string();
        }
        if let Some(u) = line.strip_prefix("web pages (survey responses) on ") {
            web = u.to_string();
        }
        if let Some(k) = line.strip_prefix("admin API key: ") {
            key = k.to_string();
            break;
        }
    }
    assert!(!gateway.is_empty() && !web.is_empty() && !key.is_empty());
    Dev {
        _proc: Proc(child),
        gateway,
        web,
        key,
    }
}

/// chromedriver on a free port, stopped with the value.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(path: &str) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    testing::eventually(Duration::from_secs(30), "chromedriver answers", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    Driver { child, url }
}

/// The survey e-mails in the data directory's mail folder.
fn mails(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("outbox-mail"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_survey_link_from_the_mail_folder_is_answered_in_a_real_browser() {
    let Some(driver_path) = testing::required_env(
        "CONCIERGE_TEST_CHROMEDRIVER",
        "the survey page in headless Chromium",
        "/usr/bin/chromedriver",
    ) else {
        return;
    };
    let chromium =
        std::env::var("CONCIERGE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(dir.path());
    let client = concierge_sdk::Client::builder(dev.gateway.clone())
        .api_key(dev.key.clone())
        .build()
        .unwrap();

    let mut c = client.customers();
    c.create_account(customers::CreateAccountRequest {
        account: Some(customers::Account {
            display_name: "Acme Lojistik".into(),
            tier: customers::Tier::Enterprise as i32,
            time_zone: "Europe/Istanbul".into(),
            ..Default::default()
        }),
        account_id: "acme".into(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    c.create_contact(customers::CreateContactRequest {
        parent: "accounts/acme".into(),
        contact: Some(customers::Contact {
            display_name: "Deniz Yılmaz".into(),
            email: "deniz@acme.example".into(),
            language_code: "tr".into(),
            roles: vec![customers::ContactRole::Billing as i32],
            ..Default::default()
        }),
        contact_id: "deniz".into(),
        request_id: String::new(),
    })
    .await
    .unwrap();

    let mut s = client.csat();
    let text = |language: &str, question: &str, thanks: &str| csat::LocalizedSurveyText {
        language_code: language.into(),
        question: question.into(),
        scale_low_label: "Hiç memnun değilim".into(),
        scale_high_label: "Çok memnunum".into(),
        comment_prompt: "Neyi daha iyi yapabilirdik?".into(),
        thank_you_message: thanks.into(),
        ..Default::default()
    };
    s.create_survey_template(csat::CreateSurveyTemplateRequest {
        survey_template: Some(csat::SurveyTemplate {
            display_name: "After resolution".into(),
            kind: csat::SurveyKind::Csat15 as i32,
            texts: vec![
                text("en", "How satisfied are you?", "Thank you!"),
                text(
                    "tr",
                    "Talebinizin ele alınışından ne kadar memnunsunuz?",
                    "Teşekkürler, yanıtınızı aldık.",
                ),
            ],
            default_language_code: "en".into(),
            comment_enabled: true,
            ..Default::default()
        }),
        survey_template_id: "post-resolution".into(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    s.create_survey_trigger(csat::CreateSurveyTriggerRequest {
        survey_trigger: Some(csat::SurveyTrigger {
            display_name: "Every resolved case".into(),
            event: csat::survey_trigger::Event::CaseResolved as i32,
            survey_template: "surveyTemplates/post-resolution".into(),
            suppression_days: 30,
            enabled: true,
            ..Default::default()
        }),
        survey_trigger_id: "resolved".into(),
        request_id: String::new(),
    })
    .await
    .unwrap();

    let mut k = client.cases();
    let case = k
        .create_case(cases::CreateCaseRequest {
            case: Some(cases::Case {
                title: "Fatura sorusu".into(),
                r#type: cases::CaseType::Inquiry as i32,
                account: "accounts/acme".into(),
                contact: "accounts/acme/contacts/deniz".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    k.open_case(cases::OpenCaseRequest {
        name: case.name.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    k.resolve_case(cases::ResolveCaseRequest {
        name: case.name.clone(),
        resolution: Some(cases::Resolution {
            root_cause: "Question answered".into(),
            resolution_code: "FIXED".into(),
            summary: "Explained the invoice".into(),
            resolver: String::new(),
        }),
        ..Default::default()
    })
    .await
    .unwrap();

    // The case's event reaches CSAT over the dev bus; the survey goes out
    // at once (no delay) as an .eml in the mail folder.
    testing::eventually(Duration::from_secs(30), "the survey e-mail", || async {
        !mails(dir.path()).is_empty()
    })
    .await;
    let raw = std::fs::read(&mails(dir.path())[0]).unwrap();
    let mail = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(mail.subject(), Some("Nasıldık? Fatura sorusu"));
    let body = mail.body_text(0).unwrap().to_string();
    let link = body
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{}/surveys/respond?token=", dev.web)))
        .unwrap_or_else(|| panic!("a link to the response page in {body}"))
        .to_string();

    let driver = start_driver(&driver_path).await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", dir.path().join("chromium").display()),
            ],
        }),
    );
    let browser =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a headless Chromium session");
    let answered = async {
        use fantoccini::Locator;
        browser.goto(&link).await?;
        let question = browser.find(Locator::Css("h1")).await?.text().await?;
        assert_eq!(
            question,
            "Talebinizin ele alınışından ne kadar memnunsunuz?"
        );
        let page = browser.source().await?;
        assert!(page.contains("Fatura sorusu"), "the case's title is shown");
        assert!(page.contains("Gönder"), "the page is in Turkish");
        browser
            .find(Locator::Css("input[name=score][value='2']"))
            .await?
            .click()
            .await?;
        browser
            .find(Locator::Css("textarea[name=comment]"))
            .await?
            .send_keys("Çok geç döndünüz")
            .await?;
        browser
            .find(Locator::Css("button[type=submit]"))
            .await?
            .click()
            .await?;
        let thanks = browser
            .wait()
            .for_element(Locator::Id("thanks"))
            .await?
            .text()
            .await?;
        // The spent link opens nothing any more.
        browser.goto(&link).await?;
        let again = browser.find(Locator::Css("h1")).await?.text().await?;
        Ok::<_, fantoccini::error::CmdError>((thanks, again))
    }
    .await;
    let _ = browser.close().await;
    let (thanks, again) = answered.expect("the page was answered in the browser");
    assert_eq!(thanks, "Teşekkürler, yanıtınızı aldık.");
    // A link that opens nothing cannot say the survey's language: the
    // browser's (English here) is used.
    assert_eq!(again, "This link no longer works");

    let surveys = s
        .list_surveys(csat::ListSurveysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .surveys;
    assert_eq!(surveys.len(), 1);
    let response = surveys[0].response.clone().expect("the answer recorded");
    assert_eq!(response.score, 2);
    assert_eq!(response.comment, "Çok geç döndünüz");
    assert_eq!(response.language_code, "tr");
    assert!(surveys[0].detractor);

    // Through the gateway, the link's methods need no key and the others do.
    let anonymous = concierge_sdk::Client::builder(dev.gateway.clone())
        .build()
        .unwrap();
    let token = link.rsplit("token=").next().unwrap().to_string();
    let spent = anonymous
        .csat()
        .get_survey_invitation(csat::GetSurveyInvitationRequest {
            response_token: token,
        })
        .await
        .unwrap_err();
    assert_eq!(spent.code(), tonic::Code::NotFound, "{spent:?}");
    let refused = anonymous
        .csat()
        .list_surveys(csat::ListSurveysRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}
