//! Devices, tokens and per-record permissions, over real sockets.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use twinsync_server::auth::Role;
use twinsync_shared::DocumentId;
use twinsync_shared::record::{Edit, Kind};
use twinsync_tests::process::{ServerProcess, add_device, twinsync};
use twinsync_tests::{TestApp, TestPeer, spawn_app, spawn_app_with};

const QUIET: Duration = Duration::from_millis(200);
const LIMIT: Duration = Duration::from_secs(10);

/// The HTTP status of a WebSocket upgrade to `/sync` with `query`.
async fn upgrade_status(app: &TestApp, query: &str) -> u16 {
    match connect_async(format!("ws://{}/sync{query}", app.addr)).await {
        Ok((_, res)) => res.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("the upgrade failed without an HTTP answer: {e}"),
    }
}

async fn record(app: &TestApp, id: DocumentId) -> Value {
    app.get_json(&format!("/api/records/{id}")).await["record"].clone()
}

/// Redeems invite `code` at `url`, with no token.
async fn post_redeem(url: String, code: String) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap()
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// The demo club's first agreement, as the server reads it, a city outside
/// its parties and one of them.
struct Sides {
    agreement: DocumentId,
    record: Value,
    outsider: String,
    party: String,
}

async fn sides(app: &TestApp) -> Sides {
    let agreement = app.first("agreement").await;
    let record = record(app, agreement).await;
    let parties = serde_json::to_string(&record["parties"]).unwrap();
    let cities = app.get_json("/api/records?kind=city").await;
    let ids: Vec<String> = cities
        .as_array()
        .unwrap()
        .iter()
        .map(|c| text(c, "id").to_owned())
        .collect();
    let find = |inside: bool| {
        ids.iter()
            .find(|c| parties.contains(c.as_str()) == inside)
            .unwrap()
            .clone()
    };
    Sides {
        agreement,
        outsider: find(false),
        party: find(true),
        record,
    }
}

fn bare(link: &str) -> String {
    link.trim_start_matches("automerge:").to_owned()
}

#[tokio::test]
async fn no_token_a_wrong_one_or_an_expired_one_gets_401() {
    let app = spawn_app().await;
    assert_eq!(upgrade_status(&app, "").await, 401);
    assert_eq!(upgrade_status(&app, "?token=nope").await, 401);
    let forged = format!("?token={}x", app.token);
    assert_eq!(upgrade_status(&app, &forged).await, 401);
    assert_eq!(
        upgrade_status(&app, &format!("?token={}", app.token)).await,
        101
    );

    // The API too, with a reason and a Bearer challenge.
    let res = reqwest::get(app.url("/api/records")).await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert!(res.text().await.unwrap().contains("token is required"));
    assert_eq!(app.get_as("/api/records", "a.b").await.status(), 401);

    // A device not seen for longer than the token's lifetime is expired.
    let token = app.device(Role::Observer, &[], None);
    assert_eq!(app.get_as("/api/records", &token).await.status(), 200);
    let id = token.split('.').next().unwrap();
    let long_ago = twinsync_tests::now() - 91 * 86_400;
    app.hub.store.set_last_seen(id, long_ago).unwrap();
    let res = app.get_as("/api/records", &token).await;
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("expired"));
    assert_eq!(upgrade_status(&app, &format!("?token={token}")).await, 401);

    // A browser offers its token as a subprotocol, which keeps it out of
    // the URL, and the server selects `twinsync`. The query carries one
    // only on `/sync`, where the official clients put it.
    let mut offer = format!("ws://{}/sync", app.addr)
        .into_client_request()
        .unwrap();
    offer.headers_mut().insert(
        "sec-websocket-protocol",
        format!("twinsync, twinsync-token.{}", app.token)
            .parse()
            .unwrap(),
    );
    let (_, res) = connect_async(offer).await.unwrap();
    assert_eq!(res.status(), 101);
    assert_eq!(res.headers()["sec-websocket-protocol"], "twinsync");
    let res = reqwest::get(app.url(&format!("/api/records?token={}", app.token)))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Which says how to give it here, not to do what was just done.
    let said: Value = res.json().await.unwrap();
    let said = said["error"].as_str().unwrap();
    assert!(said.contains("Authorization: Bearer"), "{said}");
    assert!(
        said.contains("no other route reads a token in its URL"),
        "{said}"
    );

    // Health and the API description stay public.
    assert_eq!(
        reqwest::get(app.url("/healthz")).await.unwrap().status(),
        200
    );
    assert_eq!(
        reqwest::get(app.url("/api/openapi.json"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn brute_force_on_tokens_is_rate_limited_even_for_the_right_token() {
    let app = spawn_app_with(|s| s.auth_failures_per_minute = 5).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(
            app.get_as("/api/records", &format!("guess.{i}"))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Past the limit, even a right token from that address waits.
    let res = app.get("/api/records").await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        upgrade_status(&app, &format!("?token={}", app.token)).await,
        429
    );
}

/// A token lasts its lifetime after the device was last seen. A socket
/// kept open (a secretariat's computer, left on the records for months)
/// is a sighting too: its next sign-in works.
#[tokio::test]
async fn a_device_with_a_socket_open_is_seen_and_its_token_does_not_lapse() {
    let app = spawn_app().await;
    let (_city, token, mut phone) = crate::city_delegate(&app, "secretariat", LIMIT).await;
    let id = token.split('.').next().unwrap().to_owned();
    let long_ago = twinsync_tests::now() - 91 * 86_400;
    app.hub.store.set_last_seen(&id, long_ago).unwrap();
    let seen = || app.hub.store.device(&id).unwrap().unwrap().last_seen_at;
    twinsync_tests::eventually(LIMIT, "the open socket noted as a sighting", || {
        seen() > long_ago
    })
    .await;
    assert!(seen() >= twinsync_tests::now() - 60);
    phone.sync(Duration::from_millis(200), LIMIT).await;
    assert!(!phone.seen.closed);
    assert_eq!(app.get_as("/api/me", &token).await.status(), 200);

    // A revoked device's hand-in is no sighting.
    app.revoke(&token).await;
    phone.sync_until(LIMIT, |p| p.seen.closed).await;
    phone.connect(&app).await;
    app.hub.store.set_last_seen(&id, long_ago + 1).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(seen(), long_ago + 1);
}

#[tokio::test]
async fn an_invite_is_redeemed_once_for_a_working_token_and_redemptions_are_limited() {
    let app = spawn_app_with(|s| s.redeems_per_minute = 3).await;
    // Only coordinators invite.
    let observer = app.device(Role::Observer, &[], None);
    let body = json!({"name": "Aïcha's phone", "role": "delegate", "cities": ["Smara"]});
    assert_eq!(
        app.post_as("/api/invites", &observer, &body).await.status(),
        403
    );
    let res = app.post_as("/api/invites", &app.token, &body).await;
    assert_eq!(res.status(), 201);
    let invite: Value = res.json().await.unwrap();
    let code = text(&invite, "code").to_owned();
    assert!(text(&invite, "link").ends_with(&format!("/#invite={code}")));
    // Made from a browser that opened the app through a proxy: the link is
    // at the address it opened, not the proxy's upstream in `Host`.
    let res = reqwest::Client::new()
        .post(app.url("/api/invites"))
        .bearer_auth(&app.token)
        .header("origin", "https://records.example.org")
        .json(&json!({"name": "Omar's phone", "role": "observer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let proxied: Value = res.json().await.unwrap();
    assert_eq!(
        text(&proxied, "link"),
        format!(
            "https://records.example.org/#invite={}",
            text(&proxied, "code")
        )
    );
    // A delegate needs a real city.
    let bad = json!({"name": "x", "role": "delegate", "cities": ["Atlantis"]});
    let res = app.post_as("/api/invites", &app.token, &bad).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Atlantis"));
    // A city given as the `automerge:` URL records link it by, as the API lists it.
    let cities: Value = app
        .get("/api/records?kind=city")
        .await
        .json()
        .await
        .unwrap();
    let url = text(&cities[0], "url");
    let by_url = json!({"name": "y", "role": "delegate", "cities": [url]});
    let res = app.post_as("/api/invites", &app.token, &by_url).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());

    let redeem = |code: String| post_redeem(app.url("/api/invites/redeem"), code);
    let res = redeem(code.clone()).await;
    assert_eq!(res.status(), 201);
    let redeemed: Value = res.json().await.unwrap();
    let token = text(&redeemed, "token").to_owned();
    assert_eq!(redeemed["device"]["role"], "delegate");
    let me: Value = app.get_as("/api/me", &token).await.json().await.unwrap();
    assert_eq!(me["name"], "Aïcha's phone");
    assert_eq!(me["cities"].as_array().unwrap().len(), 1);

    let again = redeem(code.clone()).await;
    assert_eq!(again.status(), 410);
    assert!(again.text().await.unwrap().contains("already used"));
    assert_eq!(redeem("zz.zz".into()).await.status(), 401);
    // Three codes that are no invite a minute from one address, then 429,
    // even for a good code.
    assert_eq!(redeem("zz.zy".into()).await.status(), 401);
    assert_eq!(redeem("zz.zx".into()).await.status(), 401);
    let fresh = app.post_as("/api/invites", &app.token, &body).await;
    let fresh: Value = fresh.json().await.unwrap();
    let res = redeem(text(&fresh, "code").to_owned()).await;
    assert_eq!(res.status(), 429);
    assert!(res.text().await.unwrap().contains("unknown invite codes"));
}

/// An invite sent to the wrong group is withdrawn before anyone uses it:
/// its link then signs no one in, and says why.
#[tokio::test]
async fn a_coordinator_lists_the_invites_not_yet_used_and_withdraws_one() {
    let app = spawn_app().await;
    let make = |name: &'static str| {
        let app = &app;
        async move {
            let body = json!({"name": name, "role": "observer"});
            let invite: Value = app
                .post_as("/api/invites", &app.token, &body)
                .await
                .json()
                .await
                .unwrap();
            (
                text(&invite, "id").to_owned(),
                text(&invite, "code").to_owned(),
            )
        }
    };
    let (wrong, wrong_code) = make("Sent to the wrong group").await;
    let (right, right_code) = make("Secretariat").await;
    let listed = app.get_json("/api/invites").await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| text(i, "id"))
        .collect();
    assert_eq!(ids, [right.as_str(), wrong.as_str()], "{listed}");
    assert!(!listed.to_string().contains(&wrong_code), "a code listed");
    // Only coordinators see or withdraw them.
    let observer = app.device(Role::Observer, &[], None);
    assert_eq!(app.get_as("/api/invites", &observer).await.status(), 403);
    let cancel = |id: &str| format!("/api/invites/{id}/cancel");
    assert_eq!(
        app.post_as(&cancel(&wrong), &observer, &json!({}))
            .await
            .status(),
        403
    );
    let res = app.post_as(&cancel(&wrong), &app.token, &json!({})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.post_as(&cancel(&wrong), &app.token, &json!({}))
            .await
            .status(),
        404
    );
    let redeem = |code: String| post_redeem(app.url("/api/invites/redeem"), code);
    let res = redeem(wrong_code).await;
    assert_eq!(res.status(), 410);
    assert!(res.text().await.unwrap().contains("withdrew"));
    // The other one still works, and once used is listed no more.
    assert_eq!(redeem(right_code).await.status(), 201);
    assert_eq!(app.get_json("/api/invites").await, json!([]));
    assert_eq!(
        app.post_as(&cancel(&right), &app.token, &json!({}))
            .await
            .status(),
        404
    );
}

/// A room of delegates behind one address (the venue's Wi-Fi) redeems
/// its invites in the same minute: only failed tries count.
#[tokio::test]
async fn invites_redeemed_from_one_address_count_only_when_they_fail() {
    let app = spawn_app_with(|s| s.redeems_per_minute = 2).await;
    let redeem = |code: String| async {
        post_redeem(app.url("/api/invites/redeem"), code)
            .await
            .status()
    };
    for n in 0..4 {
        let body = json!({"name": format!("phone {n}"), "role": "observer"});
        let invite: Value = app
            .post_as("/api/invites", &app.token, &body)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            redeem(text(&invite, "code").to_owned()).await,
            201,
            "invite {n}"
        );
    }
    // A used link tapped again, over and over, is no guess.
    let used = json!({"name": "tapped twice", "role": "observer"});
    let used: Value = app
        .post_as("/api/invites", &app.token, &used)
        .await
        .json()
        .await
        .unwrap();
    let code = text(&used, "code").to_owned();
    assert_eq!(redeem(code.clone()).await, 201);
    for _ in 0..4 {
        assert_eq!(redeem(code.clone()).await, 410);
    }
    assert_eq!(redeem("zz.zz".into()).await, 401);
    assert_eq!(redeem("zz.zy".into()).await, 401);
    assert_eq!(redeem("zz.zx".into()).await, 429);
    // Tries sent all at once are held to the limit too.
    let app = spawn_app_with(|s| s.redeems_per_minute = 2).await;
    let url = app.url("/api/invites/redeem");
    let tries = (0..8).map(|n| post_redeem(url.clone(), format!("zz.z{n}")));
    let answers: Vec<u16> = futures_util::future::join_all(tries)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let unknown = answers.iter().filter(|s| **s == 401).count();
    assert_eq!(unknown, 2, "{answers:?}");
}

#[tokio::test]
async fn a_name_given_when_redeeming_is_held_to_the_rule_an_invites_is() {
    let app = spawn_app().await;
    let body = json!({"name": "Smara office", "role": "observer"});
    let invite: Value = app
        .post_as("/api/invites", &app.token, &body)
        .await
        .json()
        .await
        .unwrap();
    let code = text(&invite, "code").to_owned();
    let redeem = |name: String| {
        let url = app.url("/api/invites/redeem");
        let code = code.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&json!({"code": code, "name": name}))
                .send()
                .await
                .unwrap()
        }
    };
    // Too long, or a name that would forge a row of `twinsync device
    // list` or reorder what is shown after it.
    for name in [
        "ه".repeat(201),
        "x\tcoordinator\tSecretariat\nfake".into(),
        "phone\u{1b}[2J".into(),
        "\u{202e}enohp".into(),
    ] {
        let res = redeem(name.clone()).await;
        assert_eq!(res.status(), 400, "{name:?}");
        let refused: Value = res.json().await.unwrap();
        assert_eq!(refused["code"], "bad-device-name", "{name:?}");
    }
    // The invite is not spent by the refusal.
    let res = redeem("  هاتف عائشة  ".into()).await;
    assert_eq!(res.status(), 201);
    let token = text(&res.json::<Value>().await.unwrap(), "token").to_owned();
    let me: Value = app.get_as("/api/me", &token).await.json().await.unwrap();
    assert_eq!(me["name"], "هاتف عائشة");
}

/// A meeting a delegate's phone lists in the club index, over a socket,
/// is theirs to send first: another delegate's phone following the index
/// sends a meeting under that id, naming its own person among those who
/// attend, and is refused (`listed-by-another`); nothing of it is stored,
/// and the maker's meeting is taken as theirs when it comes.
#[tokio::test]
async fn a_record_listed_by_one_delegate_is_not_taken_by_another_sending_it_first() {
    let app = spawn_app().await;
    let club = app.first("club").await;
    let city = app.first("city").await.to_string();
    let (maker_person, other_person) = (
        DocumentId::random().url().to_string(),
        DocumentId::random().url().to_string(),
    );
    let maker_token = app.device(Role::Delegate, &[&city], Some(&maker_person));
    let other_token = app.device(Role::Delegate, &[&city], Some(&other_person));
    let mut maker = TestPeer::new("maker-phone").with_token(&maker_token);
    maker.connect(&app).await;
    maker.fetch(club, LIMIT).await;

    // The maker's phone lists its meeting and drops before sending it.
    let id = DocumentId::random();
    maker.edit(
        club,
        "list",
        &[Edit::PutEntry {
            path: format!("/index/{id}"),
            value: json!({"kind": "meeting", "title": {"fr": "Conseil de coordination"}}),
        }],
    );
    let heads = maker.heads(club);
    maker.sync_until_acked(LIMIT, club, &heads).await;
    maker.disconnect().await;
    maker.create_at(
        id,
        Kind::Meeting,
        json!({"title": {"fr": "Conseil de coordination"}, "date": "2026-12-07", "attendees": [maker_person]}),
    );

    // Another delegate sees the listing and sends a meeting under its id.
    let mut other = TestPeer::new("other-phone").with_token(&other_token);
    other.connect(&app).await;
    other.fetch(club, LIMIT).await;
    other.create_at(
        id,
        Kind::Meeting,
        json!({"title": {"fr": "Réunion prise"}, "date": "2026-12-07", "attendees": [other_person]}),
    );
    other
        .sync_until(LIMIT, |p| {
            p.seen
                .refusals
                .iter()
                .any(|r| r.code == "listed-by-another")
        })
        .await;
    assert!(
        !app.hub.store.exists(id).unwrap(),
        "the other delegate's meeting was stored"
    );

    // The maker's phone comes back and sends it: stored as theirs.
    maker.connect(&app).await;
    let heads = maker.heads(id);
    maker.sync_until_acked(LIMIT, id, &heads).await;
    assert!(maker.seen.refusals.is_empty(), "{:?}", maker.seen.errors);
    assert_eq!(
        record(&app, id).await["title"]["fr"],
        "Conseil de coordination"
    );
}

/// Every phone follows the club index, so a delegate may only list a
/// record there: an entry under a record id the index never held. Another
/// record's entry changed, or one a coordinator took out put back, is
/// refused and kept for review.
#[tokio::test]
async fn a_delegate_lists_records_in_the_club_index_and_changes_no_other_entry() {
    let app = spawn_app().await;
    let club = app.first("club").await;
    let city = app.first("city").await;
    let token = app.device(Role::Delegate, &[&city.to_string()], None);
    let mut phone = TestPeer::new("delegate-phone").with_token(&token);
    phone.connect(&app).await;
    phone.fetch(club, LIMIT).await;
    let index = || async { record(&app, club).await["index"].clone() };
    let listed = index().await;
    let (other, entry) = listed
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| **k != city.to_string())
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();

    // A record made offline, listed: taken.
    let made = DocumentId::random().to_string();
    phone.edit(
        club,
        "list",
        &[Edit::PutEntry {
            path: format!("/index/{made}"),
            value: json!({"kind": "report", "title": {"fr": "Visite à Pune"}}),
        }],
    );
    let heads = phone.heads(club);
    phone.sync_until_acked(LIMIT, club, &heads).await;
    assert_eq!(index().await[&made]["kind"], "report");

    // Two phones holding a record made offline list it at once, each with
    // the title it read. The second to arrive wins the merge (more of its
    // own listings before it): taken, not refused as a change.
    let both = DocumentId::random().to_string();
    let other_token = app.device(Role::Delegate, &[&city.to_string()], None);
    let mut second = TestPeer::new("other-delegate").with_token(&other_token);
    second.connect(&app).await;
    second.fetch(club, LIMIT).await;
    let list = |id: &str, title: &str| Edit::PutEntry {
        path: format!("/index/{id}"),
        value: json!({"kind": "meeting", "title": {"fr": title}}),
    };
    phone.edit(club, "list", &[list(&both, "Réunion")]);
    let own = DocumentId::random().to_string();
    second.edit(
        club,
        "list",
        &[list(&own, "Visite"), list(&both, "Réunion du bureau")],
    );
    let heads = phone.heads(club);
    phone.sync_until_acked(LIMIT, club, &heads).await;
    let deadline = std::time::Instant::now() + LIMIT;
    while index().await.get(&own).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the second listing never stored: {:?}",
            second.seen.errors
        );
        second.sync(Duration::from_millis(100), LIMIT).await;
    }
    assert!(second.seen.refusals.is_empty(), "{:?}", second.seen.errors);
    assert_eq!(index().await[&both]["title"]["fr"], "Réunion du bureau");

    // Another record's entry, retitled: refused, kept for review.
    phone.edit(
        club,
        "retitle",
        &[Edit::Set {
            path: format!("/index/{other}/title/fr"),
            value: json!("Titre usurpé"),
        }],
    );
    phone
        .sync_until(LIMIT, |p| {
            p.seen
                .refusals
                .iter()
                .any(|r| r.code == "club-index-changed")
        })
        .await;
    assert_eq!(index().await[&other], entry);
    let queue = app.get_json("/api/quarantine?status=pending").await;
    assert!(
        queue
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["code"] == "club-index-changed"),
        "{queue}"
    );

    // A coordinator takes the new entry out; a phone of the same
    // delegate, which had it, cannot put it back.
    let mut coordinator = app.peer("coordinator");
    coordinator.connect(&app).await;
    coordinator.fetch(club, LIMIT).await;
    coordinator.edit(
        club,
        "take out",
        &[Edit::RemoveEntry {
            path: format!("/index/{made}"),
        }],
    );
    let heads = coordinator.heads(club);
    coordinator.sync_until_acked(LIMIT, club, &heads).await;
    assert!(index().await.get(&made).is_none());
    let mut tablet = TestPeer::new("delegate-tablet").with_token(&token);
    tablet.connect(&app).await;
    tablet.fetch(club, LIMIT).await;
    tablet.edit(
        club,
        "list again",
        &[Edit::PutEntry {
            path: format!("/index/{made}"),
            value: json!({"kind": "report"}),
        }],
    );
    tablet
        .sync_until(LIMIT, |p| {
            p.seen
                .refusals
                .iter()
                .any(|r| r.code == "club-index-relisted")
        })
        .await;
    assert!(index().await.get(&made).is_none());
}

#[tokio::test]
async fn the_permission_matrix_of_roles_kinds_reads_and_writes() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for kind in [
        "club",
        "city",
        "agreement",
        "project",
        "meeting",
        "person",
        "report",
    ] {
        ids.push((kind.parse::<Kind>().unwrap(), app.first(kind).await));
    }
    // The demo meeting is adopted (read-only to delegates): reopen it so
    // the matrix tests attendance, not adoption.
    let meeting = ids.iter().find(|(k, _)| *k == Kind::Meeting).unwrap().1;
    let mut coord = app.peer("setup");
    coord.connect(&app).await;
    coord.fetch(meeting, LIMIT).await;
    coord.edit(
        meeting,
        "reopen",
        &[Edit::Set {
            path: "/adopted".into(),
            value: json!(false),
        }],
    );
    coord
        .sync_until(LIMIT, |p| p.unacknowledged(meeting) == 0)
        .await;
    assert_eq!(record(&app, meeting).await["adopted"], false);

    let cities: Vec<String> = app
        .get_json("/api/records?kind=city")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|c| text(c, "id").to_owned())
        .collect();
    let mut outcomes = Vec::new();
    for (kind, id) in &ids {
        let r = record(&app, *id).await;
        // What makes the record a delegate's own, by its kind's rule.
        let (home, person): (Option<String>, Option<String>) = match kind {
            Kind::City => (Some(id.to_string()), None),
            Kind::Agreement => (
                r["parties"]
                    .as_array()
                    .and_then(|p| p.first())
                    .and_then(Value::as_str)
                    .map(bare),
                None,
            ),
            Kind::Project => (Some(bare(text(&r, "owner_city"))), None),
            Kind::Person => (Some(bare(text(&r, "city"))), None),
            Kind::Meeting => (
                None,
                r["attendees"]
                    .as_array()
                    .and_then(|p| p.first())
                    .and_then(Value::as_str)
                    .map(bare),
            ),
            Kind::Report => (None, Some(bare(text(&r, "author")))),
            _ => (None, None),
        };
        // The club's index names every city; any city is a stranger to it.
        let related = if *kind == Kind::Club {
            String::new()
        } else {
            serde_json::to_string(&r).unwrap()
        };
        let stranger_city = cities
            .iter()
            .find(|c| !related.contains(c.as_str()) && c.as_str() != id.to_string())
            .unwrap();
        let home_city = home.clone().unwrap_or_else(|| cities[0].clone());
        let devices = [
            ("coordinator", app.token.clone(), true),
            (
                "owner",
                app.device(Role::Delegate, &[&home_city], person.as_deref()),
                *kind != Kind::Club,
            ),
            (
                "stranger",
                app.device(Role::Delegate, &[stranger_city], None),
                false,
            ),
            ("observer", app.device(Role::Observer, &[], None), false),
        ];
        for (who, token, may_write) in devices {
            let mut p = TestPeer::new(&format!("{who}-{kind}")).with_token(&token);
            p.connect(&app).await;
            p.open(*id);
            p.sync_until(LIMIT, |p| p.kind_of(*id) == Some(*kind)).await;
            let read = p.heads(*id)
                == app.get_json(&format!("/api/records/{id}")).await["heads"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_str().unwrap().parse().unwrap())
                    .collect::<Vec<_>>();
            let value = format!("Matrice {who}");
            let path = format!("/{}/fr", kind.title_field());
            let change = p
                .edit(
                    *id,
                    "matrix",
                    &[Edit::Set {
                        path: path.clone(),
                        value: json!(value),
                    }],
                )
                .unwrap();
            // Until the server answers: it acknowledges the change or refuses it.
            p.sync_until(LIMIT, |p| {
                !p.seen.errors.is_empty() || p.acknowledged(*id).contains(&change)
            })
            .await;
            let stored = record(&app, *id).await[kind.title_field()]["fr"] == json!(value);
            let refused =
                p.seen.errors.iter().any(|e| {
                    e.contains(&format!("refused at {path}")) && e.contains(&id.to_string())
                });
            outcomes.push(format!(
                "{kind} {who}: read={read} write={stored} refused={refused}"
            ));
            assert!(read, "{kind} {who} could not read");
            assert_eq!(
                stored, may_write,
                "{kind} {who}: stored={stored}, errors {:?}",
                p.seen.errors
            );
            assert_eq!(
                refused, !may_write,
                "{kind} {who}: errors {:?}",
                p.seen.errors
            );
            assert!(!p.seen.closed, "a refusal keeps the socket open");
        }
    }
    assert_eq!(outcomes.len(), 28, "{outcomes:#?}");
}

#[tokio::test]
async fn a_change_to_another_citys_agreement_is_quarantined_and_never_relayed() {
    let app = spawn_app().await;
    let Sides {
        agreement,
        record: r,
        outsider,
        ..
    } = sides(&app).await;
    let token = app.device(Role::Delegate, &[&outsider], None);

    let mut watcher = app.peer("watcher");
    watcher.connect(&app).await;
    watcher.fetch(agreement, LIMIT).await;
    let before = watcher.heads(agreement);

    let mut intruder = TestPeer::new("intruder").with_token(&token);
    intruder.connect(&app).await;
    intruder.fetch(agreement, LIMIT).await;
    intruder.edit(
        agreement,
        "suspend it",
        &[Edit::Set {
            path: "/status".into(),
            value: json!("suspended"),
        }],
    );
    intruder
        .sync_until(LIMIT, |p| !p.seen.errors.is_empty())
        .await;
    let error = intruder
        .seen
        .errors
        .iter()
        .find(|e| e.contains("refused"))
        .cloned()
        .unwrap_or_else(|| panic!("no refusal: {:?}", intruder.seen.errors));
    assert!(
        error.contains(&agreement.to_string())
            && error.contains("/status")
            && error.contains("party"),
        "{error}"
    );

    watcher.sync(QUIET, LIMIT).await;
    assert_eq!(
        watcher.heads(agreement),
        before,
        "the watcher saw the refused change"
    );
    assert_eq!(record(&app, agreement).await["status"], r["status"]);

    let queue = app.get_json("/api/quarantine?status=pending").await;
    let entry = &queue.as_array().unwrap()[0];
    assert_eq!(entry["doc_id"], agreement.to_string());
    assert_eq!(entry["path"], "/status");
    // The device is named with its role, which its own name cannot fake.
    assert_eq!(entry["device_role"], "delegate", "{entry}");
    // Sending it again keeps one entry.
    intruder.disconnect().await;
    intruder.connect(&app).await;
    intruder.sync(QUIET, LIMIT).await;
    assert_eq!(
        app.get_json("/api/quarantine?status=pending")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Delegates cannot review it; a coordinator discards it.
    let q = entry["id"].as_i64().unwrap();
    let res = app
        .post_as(&format!("/api/quarantine/{q}/discard"), &token, &json!({}))
        .await;
    assert_eq!(res.status(), 403);
    let res = app
        .post_as(
            &format!("/api/quarantine/{q}/discard"),
            &app.token,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.get_json("/api/quarantine?status=discarded")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(record(&app, agreement).await["status"], r["status"]);
    // A status the quarantine does not know is an error, not an empty list.
    let res = app.get("/api/quarantine?status=Discarded").await;
    assert_eq!(res.status(), 400);
    let said: Value = res.json().await.unwrap();
    assert!(
        text(&said, "error").contains("pending, accepted or discarded"),
        "{said}"
    );
}

/// A delegate of a city that is no party to an agreement, connected and
/// holding it: each of its writes to it is refused.
async fn intruder_on_an_agreement(app: &TestApp) -> (DocumentId, TestPeer) {
    let Sides {
        agreement,
        outsider,
        ..
    } = sides(app).await;
    let token = app.device(Role::Delegate, &[&outsider], None);
    let mut intruder = TestPeer::new("intruder").with_token(&token);
    intruder.connect(app).await;
    intruder.fetch(agreement, LIMIT).await;
    (agreement, intruder)
}

/// The quarantine's pending batches.
async fn pending_batches(app: &TestApp) -> Vec<Value> {
    app.get_json("/api/quarantine?status=pending")
        .await
        .as_array()
        .unwrap()
        .clone()
}

/// An edit setting a record's status.
fn status_edit(status: &str) -> Vec<Edit> {
    vec![Edit::Set {
        path: "/status".into(),
        value: json!(status),
    }]
}

/// A delegate whose change was refused types on: every later change builds
/// on the refused one. They wait with it on the phone, neither sent nor
/// quarantined again at each keystroke; once a coordinator accepts the
/// refused change, they come in, checked as any change is.
#[tokio::test]
async fn changes_typed_after_a_refused_one_wait_with_it_until_it_is_accepted() {
    const LATER: usize = 7;
    let app = spawn_app().await;
    let (agreement, mut intruder) = intruder_on_an_agreement(&app).await;
    intruder.edit(agreement, "suspend it", &status_edit("suspended"));
    intruder
        .sync_until(LIMIT, |p| p.seen.errors_with("refused") == 1)
        .await;
    for i in 0..LATER {
        let to = if i % 2 == 0 { "ended" } else { "suspended" };
        intruder.edit(agreement, "and again", &status_edit(to));
        intruder.sync(QUIET, LIMIT).await;
    }
    let rows = pending_batches(&app).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["hashes"].as_array().unwrap().len(), 1, "{rows:#?}");
    assert_eq!(
        intruder.seen.errors_with("refused"),
        1,
        "{:?}",
        intruder.seen.errors
    );
    assert!(!intruder.seen.closed);

    // Accepted: the first change is in (the last typed, "ended", is not),
    // and the seven after it come in as one batch, refused as the first
    // was (the delegate is still no party).
    let id = rows[0]["id"].as_i64().unwrap();
    let res = app.accept(id).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    assert_eq!(record(&app, agreement).await["status"], "suspended");
    intruder
        .sync_until(LIMIT, |p| p.seen.errors_with("refused") == 2)
        .await;
    let rows = pending_batches(&app).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(
        rows[0]["hashes"].as_array().unwrap().len(),
        LATER,
        "{rows:#?}"
    );
}

/// A server stopped between a coordinator's accept and its append: the
/// batch, claimed but never applied, is pending review again at the next
/// start, and accepted then, its change is in the record.
#[tokio::test]
async fn a_batch_accepted_but_never_applied_is_pending_again_after_a_restart() {
    let app = spawn_app().await;
    let (agreement, mut intruder) = intruder_on_an_agreement(&app).await;
    intruder.edit(agreement, "suspend it", &status_edit("suspended"));
    intruder
        .sync_until(LIMIT, |p| p.seen.errors_with("refused") == 1)
        .await;
    intruder.disconnect().await;
    let rows = pending_batches(&app).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let id = rows[0]["id"].as_i64().unwrap();

    // The claim an accept makes first, and then the server stops.
    let data_dir = app.data_dir.clone();
    let (_, _temp) = app.stop().await;
    let db = rusqlite::Connection::open(data_dir.join("twinsync.db")).unwrap();
    let claimed = db
        .execute(
            "UPDATE quarantine SET status = 'accepted', decided_by = 'coordinator',
             decided_at = CAST(strftime('%s', 'now') AS INTEGER)
             WHERE id = ?1",
            [id],
        )
        .unwrap();
    assert_eq!(claimed, 1);
    drop(db);

    let mut settings = twinsync_server::settings::Settings::for_data_dir(data_dir);
    settings.no_demo = true;
    let app = twinsync_tests::start(settings).await;
    let rows = pending_batches(&app).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["id"].as_i64(), Some(id));
    let res = app.accept(id).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    assert_eq!(record(&app, agreement).await["status"], "suspended");
}

/// An intruder whose refused change is pending, who typed another on it
/// and reconnected: the quarantine holds the two as two batches, the
/// first and the one that builds on it.
async fn two_pending_batches(app: &TestApp) -> (DocumentId, TestPeer, Value, Value) {
    let (agreement, mut intruder) = intruder_on_an_agreement(app).await;
    let q = intruder.edit(agreement, "suspend it", &status_edit("suspended"));
    intruder
        .sync_until(LIMIT, |p| p.seen.errors_with("refused") == 1)
        .await;
    let r = intruder.edit(agreement, "end it", &status_edit("ended"));
    intruder.sync(QUIET, LIMIT).await;
    intruder.disconnect().await;
    intruder.connect(app).await;
    intruder
        .sync_until(LIMIT, |p| p.seen.errors_with("refused") == 2)
        .await;
    let rows = pending_batches(app).await;
    let holding = |hash: Option<automerge::ChangeHash>| {
        let hashes = json!([hash.unwrap().to_string()]);
        rows.iter().find(|row| row["hashes"] == hashes).cloned()
    };
    let (Some(first), Some(second)) = (holding(q), holding(r)) else {
        panic!("not one batch for each change: {rows:#?}");
    };
    assert_eq!(rows.len(), 2, "{rows:#?}");
    (agreement, intruder, first, second)
}

/// Reconnected, the phone sends the refused change again with everything
/// typed since: what a pending batch holds is not kept twice, and the rest
/// waits as a batch of its own, so the batch a coordinator is looking at
/// never changes. Once the first is discarded, so is the second, and
/// nothing of them comes back.
#[tokio::test]
async fn a_refused_change_sent_again_is_kept_once_and_once_discarded_stays_out() {
    let app = spawn_app().await;
    let (_, mut intruder, first, _) = two_pending_batches(&app).await;

    // Discarding the first discards the second, which builds on it.
    let id = first["id"].as_i64().unwrap();
    let res = app
        .post_as(
            &format!("/api/quarantine/{id}/discard"),
            &app.token,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(
        pending_batches(&app).await.is_empty(),
        "{:#?}",
        pending_batches(&app).await
    );
    intruder.disconnect().await;
    intruder.connect(&app).await;
    intruder
        .sync_until(LIMIT, |p| p.seen.errors_with("refused") == 3)
        .await;
    let told = intruder.seen.errors.last().unwrap();
    assert!(told.contains("already discarded"), "{told}");
    let refusal = intruder.seen.refusals.last().unwrap();
    assert!(
        refusal.discarded && refusal.quarantine.is_some(),
        "{refusal:?}"
    );
    assert!(
        pending_batches(&app).await.is_empty(),
        "{:#?}",
        pending_batches(&app).await
    );
    assert!(!intruder.seen.closed);
}

/// A batch that builds on another still pending names it: in the list,
/// in its preview and when accepted first, which changes nothing. Once
/// the first is accepted, it applies.
#[tokio::test]
async fn a_batch_built_on_a_pending_one_says_which_to_accept_first() {
    let app = spawn_app().await;
    let (agreement, mut intruder, first, second) = two_pending_batches(&app).await;
    let (first, second) = (
        first["id"].as_i64().unwrap(),
        second["id"].as_i64().unwrap(),
    );
    let rows = pending_batches(&app).await;
    let on = |id: i64| rows.iter().find(|r| r["id"] == id).unwrap()["builds_on"].clone();
    assert_eq!((on(first), on(second)), (json!([]), json!([first])));

    let before = record(&app, agreement).await["status"].clone();
    assert_ne!(before, "ended");

    let shown = app.get_json(&format!("/api/quarantine/{second}")).await;
    assert_eq!(shown["not_shown_code"], "builds-on-pending", "{shown:#}");
    assert!(
        shown["not_shown"]
            .as_str()
            .unwrap()
            .contains(&format!("#{first}")),
        "{shown:#}"
    );
    let accept = |id: i64| {
        let app = &app;
        async move {
            app.post_as(
                &format!("/api/quarantine/{id}/accept"),
                &app.token,
                &json!({}),
            )
            .await
        }
    };
    let res = accept(second).await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "batch-builds-on-pending", "{body:#}");
    let said = body["error"].as_str().unwrap();
    assert!(said.contains(&format!("batch #{first}")), "{said}");
    assert_eq!(pending_batches(&app).await.len(), 2);
    assert_eq!(record(&app, agreement).await["status"], before);

    let res = accept(first).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    assert_eq!(record(&app, agreement).await["status"], "suspended");
    // The phone sends the second again once the first is in; it waits
    // in the same batch, which now applies.
    intruder.sync(QUIET, LIMIT).await;
    let rows = pending_batches(&app).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(
        (rows[0]["id"].as_i64(), rows[0]["builds_on"].clone()),
        (Some(second), json!([]))
    );
    let res = accept(second).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    assert_eq!(record(&app, agreement).await["status"], "ended");
}

#[tokio::test]
async fn a_revoked_device_is_cut_off_at_once_then_may_only_hand_in_its_changes() {
    let app = spawn_app().await;
    let (city, token, mut phone) = crate::city_delegate(&app, "stolen-phone", LIMIT).await;
    let device_id = token.split('.').next().unwrap().to_owned();
    let body = app.revoke(&token).await;
    assert_eq!(body["sockets_closed"], 1);
    phone.sync(Duration::from_secs(3), LIMIT).await;
    assert!(phone.seen.closed, "the revoked device's socket stays open");

    // Offline, the phone edits; reconnected, it reads nothing ...
    phone.edit(
        city,
        "field note",
        &[Edit::Set {
            path: "/name/fr".into(),
            value: json!("Smara (note de terrain)"),
        }],
    );
    phone.connect(&app).await;
    let person = app.first("person").await;
    phone.open(person);
    phone
        .settle(LIMIT, QUIET, |p| {
            p.seen.closed || p.seen.unavailable.contains(&person) || p.kind_of(person).is_some()
        })
        .await;
    assert!(
        phone.seen.unavailable.contains(&person),
        "a revoked device read a record"
    );
    assert!(phone.kind_of(person).is_none());
    // ... and what it handed in waits in quarantine, not in the record.
    let deadline = std::time::Instant::now() + LIMIT;
    let entry = loop {
        let queue = app.get_json("/api/quarantine?status=pending").await;
        let found = queue
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["doc_id"] == city.to_string())
            .cloned();
        if let Some(entry) = found {
            break entry;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing handed in: {queue}"
        );
        if phone.seen.closed {
            tokio::time::sleep(QUIET).await;
        } else {
            phone.sync(QUIET, LIMIT).await;
        }
    };
    let entry = &entry;
    assert!(text(entry, "reason").contains("revoked"));
    assert_ne!(
        record(&app, city).await["name"]["fr"],
        "Smara (note de terrain)"
    );
    assert_eq!(app.get_as("/api/records", &token).await.status(), 403);

    // A coordinator who finds the revocation was a mistake accepts the work.
    let q = entry["id"].as_i64().unwrap();
    let res = app.accept(q).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(
        record(&app, city).await["name"]["fr"],
        "Smara (note de terrain)"
    );
    let history = app.get_json(&format!("/api/records/{city}/history")).await;
    let last = history
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["message"] == "field note")
        .unwrap();
    assert_eq!(last["delivered_by"]["device"], device_id.as_str());
}

/// A revoked device's hand-in is taken into a copy per record, on its
/// connection. The copies hold at most what the device may have waiting
/// for review (`max_quarantine_mib`) besides the record in hand, even when
/// what it sends is records the server has already, which go to no
/// quarantine. A record whose copy was dropped is still taken in when the
/// device sends more for it.
#[tokio::test]
async fn a_revoked_devices_hand_in_holds_bounded_memory_and_loses_nothing() {
    use automerge::ROOT;
    use automerge::transaction::Transactable;
    let app = spawn_app_with(|s| s.max_quarantine_mib = 1).await;
    let token = app.device(Role::Coordinator, &[], None);
    let mut phone = TestPeer::new("lost-phone").with_token(&token);
    phone.connect(&app).await;
    // Three records, each with 400 KiB the server holds: 1.2 MiB in all.
    let mut records = Vec::new();
    for (n, kind) in (1..).zip(["meeting", "city", "person"]) {
        let id = app.first(kind).await;
        phone.fetch(id, LIMIT).await;
        let mut tx = phone.doc_mut(id).transaction();
        tx.put(ROOT, "attachment", twinsync_tests::noise(n, 400 * 1024))
            .unwrap();
        tx.commit();
        let heads = phone.heads(id);
        phone.sync_until_acked(LIMIT, id, &heads).await;
        records.push(id);
    }
    app.revoke(&token).await;
    phone.sync(Duration::from_secs(1), LIMIT).await;
    assert!(phone.seen.closed);

    // Reconnected, it hands in all three, the server holding them all.
    phone.connect(&app).await;
    phone.sync(Duration::from_secs(1), LIMIT).await;
    assert!(!phone.seen.closed, "{:?}", phone.seen.errors);
    assert!(
        app.hub.metrics.hand_in_copies_dropped.get() >= 1,
        "1.2 MiB held for a revoked device allowed 1 MiB"
    );
    // A note on each record, two of whose copies went, still reaches
    // review: only the note, not the attachment the server holds.
    for id in &records {
        let mut tx = phone.doc_mut(*id).transaction();
        tx.put(ROOT, "note", "après la révocation · بعد الإلغاء")
            .unwrap();
        tx.commit();
    }
    phone.sync(Duration::from_secs(1), LIMIT).await;
    assert!(phone.seen.errors.is_empty(), "{:?}", phone.seen.errors);
    assert!(!phone.seen.closed);
    let queue = app.get_json("/api/quarantine?status=pending").await;
    for id in &records {
        let kept: Vec<&Value> = queue
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["doc_id"] == id.to_string())
            .collect();
        assert_eq!(kept.len(), 1, "{id}: {queue}");
        let hashes = kept[0]["hashes"].as_array().unwrap();
        assert_eq!(hashes.len(), 1, "only the note is for review: {queue}");
        let (_, changes) = app
            .hub
            .store
            .quarantined_changes(kept[0]["id"].as_i64().unwrap())
            .unwrap()
            .unwrap();
        assert!(
            changes.len() < 4096,
            "{id}: {} bytes kept for review of one note",
            changes.len()
        );
    }
}

/// The copy a revoked device's changes are taken into holds no more ops
/// than a record may: compressed, a million ops take a few kilobytes,
/// well within the bytes its copies may hold.
#[tokio::test]
async fn a_revoked_devices_hand_in_holds_no_more_ops_than_a_record_may() {
    const MAX_OPS: u64 = 20_000;
    let app = spawn_app_with(|s| s.max_record_ops = MAX_OPS).await;
    let token = app.device(Role::Coordinator, &[], None);
    let meeting = app.first("meeting").await;
    let mut phone = TestPeer::new("lost-phone").with_token(&token);
    phone.connect(&app).await;
    phone.fetch(meeting, LIMIT).await;
    app.revoke(&token).await;
    phone.sync(Duration::from_secs(1), LIMIT).await;
    assert!(phone.seen.closed);
    // Offline, the lost phone piles more ops into the meeting than a
    // record may hold, then hands them in.
    twinsync_tests::tally(phone.doc_mut(meeting), "piled", MAX_OPS as usize + 1_000);
    phone.connect(&app).await;
    phone
        .sync_until(LIMIT, |p| {
            p.seen
                .errors
                .iter()
                .any(|e| e.contains("operations per record"))
        })
        .await;
    let said = phone.seen.errors.join("; ");
    assert!(
        said.contains("not kept: with them it would hold")
            && said.contains(&format!(
                "past the limit of {MAX_OPS} operations per record"
            )),
        "{said}"
    );
    assert!(app.hub.metrics.hand_in_copies_dropped.get() >= 1);
    // Said as a refusal of the changes, which the app keeps with them.
    assert!(
        phone
            .seen
            .refusals
            .iter()
            .any(|r| r.code == "too-large" && r.document_id == meeting),
        "{:?}",
        phone.seen.refusals
    );
    let held = app.hub.store.quarantined(None).unwrap();
    assert!(held.is_empty(), "{held:?}");
}

/// A revoked device's hand-in starts from nothing on every socket, so it
/// sends all it holds each time. Past its operations a minute it waits for
/// the next minute, rather than being cut off to come back and pass the
/// budget at the same point for ever; the wait, longer than the peer
/// timeout here, does not count as the phone's silence.
#[tokio::test]
async fn a_revoked_devices_hand_in_past_its_operations_a_minute_waits_and_finishes() {
    hand_in_past_budget(
        |s| s.device_ops_per_minute = 20_000,
        // 12,000 ops to each of three records: 36,000 in all.
        |doc, n| twinsync_tests::tally(doc, &format!("offline-{n}"), 12_000),
    )
    .await;
}

/// As above, past its MiB a minute.
#[tokio::test]
async fn a_revoked_devices_hand_in_past_its_bytes_a_minute_waits_and_finishes() {
    use automerge::ROOT;
    use automerge::transaction::Transactable;
    hand_in_past_budget(
        |s| s.device_mib_per_minute = 1,
        // 400 KiB that do not compress to each of three records.
        |doc, n| {
            let mut tx = doc.transaction();
            tx.put(ROOT, "attachment", twinsync_tests::noise(n, 400 * 1024))
                .unwrap();
            tx.commit();
        },
    )
    .await;
}

/// A revoked phone holding three records, each given `offline` edits past
/// a third of the budget `limit` sets, hands them all in on one socket.
async fn hand_in_past_budget(
    limit: impl FnOnce(&mut twinsync_server::settings::Settings),
    offline: impl Fn(&mut automerge::Automerge, u64),
) {
    let app = spawn_app_with(|s| {
        limit(s);
        s.rate_window_secs = 4;
        s.ping_secs = 1;
        s.peer_timeout_secs = 2;
    })
    .await;
    let token = app.device(Role::Coordinator, &[], None);
    let mut phone = TestPeer::new("lost-phone")
        .with_token(&token)
        .hearing_pings();
    phone.connect(&app).await;
    let mut records = Vec::new();
    for kind in ["meeting", "city", "person"] {
        let id = app.first(kind).await;
        phone.fetch(id, LIMIT).await;
        records.push(id);
    }
    app.revoke(&token).await;
    phone.sync(Duration::from_secs(1), LIMIT).await;
    assert!(phone.seen.closed);
    for (id, n) in records.iter().zip(1..) {
        offline(phone.doc_mut(*id), n);
    }
    // The window the fetches were counted in ends: the hand-in starts a
    // fresh one, so each wait is a whole window, longer than the timeout.
    tokio::time::sleep(Duration::from_secs(4)).await;
    phone.connect(&app).await;
    let handed_in = || app.hub.store.quarantined(None).unwrap().len();
    phone
        .sync_until(3 * LIMIT, |p| p.seen.closed || handed_in() == records.len())
        .await;
    assert!(
        !phone.seen.closed && phone.seen.errors.is_empty(),
        "{:?}",
        phone.seen.errors
    );
    let kept: HashSet<String> = app
        .hub
        .store
        .quarantined(None)
        .unwrap()
        .into_iter()
        .map(|q| q.doc_id)
        .collect();
    let all: HashSet<String> = records.iter().map(ToString::to_string).collect();
    assert_eq!(kept, all);
    assert!(
        app.hub.metrics.rate_limited.get() >= 1,
        "the budget was never reached"
    );
    // A browser hears no WebSocket ping: the server pinged it meanwhile.
    assert!(phone.seen.pings >= 2, "{} pings", phone.seen.pings);
}

/// The bound on a revoked device's hand-in copies holds over all its
/// connections, not each: two phones' tabs under one token, each within
/// the budget alone, hold more than it together, and the second drops a
/// copy. A revoked device keeps at most four connections, and the bytes a
/// closed one held are let go of.
#[tokio::test]
async fn a_revoked_devices_hand_in_is_bounded_over_all_its_connections() {
    use automerge::ROOT;
    use automerge::transaction::Transactable;
    let app = spawn_app_with(|s| s.max_quarantine_mib = 1).await;
    let token = app.device(Role::Coordinator, &[], None);
    let device_id = token.split('.').next().unwrap().to_owned();
    let held = || app.hub.hand_in_share(&device_id, 0, 0);
    // Tab A holds two records with 400 KiB each, tab B one, and a fourth
    // record with nothing added.
    let mut a = TestPeer::new("lost-tab-a").with_token(&token);
    let mut b = TestPeer::new("lost-tab-b").with_token(&token);
    a.connect(&app).await;
    b.connect(&app).await;
    let kinds = ["meeting", "city", "person", "project"];
    for (n, kind) in (1..).zip(kinds) {
        let id = app.first(kind).await;
        let tab = if n <= 2 { &mut a } else { &mut b };
        tab.fetch(id, LIMIT).await;
        if n <= 3 {
            let mut tx = tab.doc_mut(id).transaction();
            tx.put(ROOT, "attachment", twinsync_tests::noise(n, 400 * 1024))
                .unwrap();
            tx.commit();
            let heads = tab.heads(id);
            tab.sync_until_acked(LIMIT, id, &heads).await;
        }
    }
    app.revoke(&token).await;
    for tab in [&mut a, &mut b] {
        tab.sync(Duration::from_secs(1), LIMIT).await;
        assert!(tab.seen.closed);
    }

    // A hands in its two: 800 KiB and more, within the budget.
    a.connect(&app).await;
    a.sync(Duration::from_secs(1), LIMIT).await;
    assert!(!a.seen.closed, "{:?}", a.seen.errors);
    assert_eq!(app.hub.metrics.hand_in_copies_dropped.get(), 0);
    let by_a = held();
    assert!(by_a > 800 * 1024, "{by_a}");
    // B's two take the device past it, though B's alone would not.
    b.connect(&app).await;
    b.sync(Duration::from_secs(1), LIMIT).await;
    assert!(!b.seen.closed, "{:?}", b.seen.errors);
    // (Once at least: B's two exchanges interleave, and a copy dropped
    // is made again by the next message for its record.)
    assert!(
        app.hub.metrics.hand_in_copies_dropped.get() >= 1,
        "1.2 MiB and more held for a revoked device allowed 1 MiB"
    );
    assert!(held() <= 1024 * 1024 + by_a, "{}", held());

    // Three tabs more: the oldest, A, makes way, and its copies go.
    let mut more = Vec::new();
    for n in 0..3 {
        let mut tab = TestPeer::new(&format!("lost-tab-{n}")).with_token(&token);
        tab.connect(&app).await;
        more.push(tab);
    }
    a.sync(Duration::from_secs(1), LIMIT).await;
    assert!(
        a.seen.closed,
        "the fifth connection of a revoked device closes the oldest"
    );
    assert_eq!(app.hub.metrics.peers_displaced.get(), 1);
    twinsync_tests::eventually(LIMIT, "A's copies let go of", || held() < by_a).await;
    b.sync(Duration::from_secs(1), LIMIT).await;
    assert!(!b.seen.closed);
}

#[tokio::test]
async fn a_delegate_moved_to_another_city_signs_in_again_and_its_refused_edit_is_kept() {
    let app = spawn_app().await;
    let Sides {
        agreement,
        record: r,
        outsider,
        party,
    } = sides(&app).await;
    let token = app.device(Role::Delegate, &[&outsider], None);
    let device_id = token.split('.').next().unwrap().to_owned();
    let path = format!("/api/devices/{device_id}");
    let wanted = if r["status"] == "in_force" {
        "suspended"
    } else {
        "in_force"
    };

    // The delegate of a city outside the agreement is refused ...
    let mut phone = TestPeer::new("moved-phone").with_token(&token);
    phone.connect(&app).await;
    phone.fetch(agreement, LIMIT).await;
    phone.edit(
        agreement,
        "status, as agreed in Smara",
        &[Edit::Set {
            path: "/status".into(),
            value: json!(wanted),
        }],
    );
    phone
        .sync_until(LIMIT, |p| {
            p.seen.errors.iter().any(|e| e.contains("refused"))
        })
        .await;
    assert_ne!(record(&app, agreement).await["status"], wanted);

    // ... and may not move itself.
    let res = app
        .patch_as(&path, &token, &json!({"cities": [party]}))
        .await;
    assert_eq!(res.status(), 403);

    // A new name alone leaves its socket open.
    let res = app
        .patch_as(&path, &app.token, &json!({"name": "Aminata's phone"}))
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["name"], "Aminata's phone");
    assert_eq!(body["sockets_closed"], 0);
    assert!(body["changed_at"].is_null());
    phone.sync(QUIET, LIMIT).await;
    assert!(!phone.seen.closed, "a new name closed the socket");

    // A coordinator moves the delegate to a party city: its socket closes ...
    let res = app
        .patch_as(&path, &app.token, &json!({"cities": [party]}))
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["cities"], json!([party]));
    assert_eq!(body["name"], "Aminata's phone");
    assert_eq!(body["sockets_closed"], 1);
    assert!(body["changed_at"].is_i64());
    phone.sync(Duration::from_secs(3), LIMIT).await;
    assert!(phone.seen.closed, "the socket kept the old rights");

    // ... and the phone, signing in again with the same token, sends the
    // edit it kept, which the new rights let in.
    phone.connect(&app).await;
    phone
        .sync_until(LIMIT, |p| {
            p.acked.get(&agreement) == Some(&p.heads(agreement))
        })
        .await;
    assert_eq!(record(&app, agreement).await["status"], wanted);
    // What was refused is stored now: it waits for no review.
    let queue = app.get_json("/api/quarantine").await;
    let entry = queue
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["doc_id"] == agreement.to_string())
        .unwrap_or_else(|| panic!("the refusal was not kept: {queue}"));
    assert_eq!(entry["status"], "accepted", "{entry}");
    assert_eq!(entry["decided_by"], device_id.as_str());
    let listed = app
        .get_json("/api/devices")
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == device_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["cities"], json!([party]));
}

#[tokio::test]
async fn a_device_change_is_checked_and_the_last_coordinator_stays_one() {
    let app = spawn_app().await;
    let cities = app.get_json("/api/records?kind=city").await;
    let [city, second] = [0, 1].map(|i| text(&cities[i], "id").to_owned());
    let city = city.as_str();
    let delegate = app.device(Role::Delegate, &[city], None);
    let delegate_id = delegate.split('.').next().unwrap().to_owned();
    let path = format!("/api/devices/{delegate_id}");
    let error = |v: &Value| text(v, "error").to_owned();

    let res = app
        .patch_as(&path, &app.token, &json!({"cities": ["Atlantis"]}))
        .await;
    assert_eq!(res.status(), 400);
    assert!(error(&res.json().await.unwrap()).contains("`Atlantis`"));
    let res = app
        .patch_as(&path, &app.token, &json!({"cities": []}))
        .await;
    assert_eq!(res.status(), 400);
    assert!(error(&res.json().await.unwrap()).contains("at least one member city"));
    let res = app
        .patch_as(&path, &app.token, &json!({"city": [city]}))
        .await;
    assert_eq!(res.status(), 422, "an unknown field was taken");
    let res = app
        .patch_as("/api/devices/nobody", &app.token, &json!({"name": "x"}))
        .await;
    assert_eq!(res.status(), 404);

    // Nothing refused was kept.
    let devices = app.get_json("/api/devices").await;
    let stored = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == delegate_id.as_str())
        .unwrap();
    assert_eq!(stored["cities"], json!([city]));
    assert_eq!(stored["role"], "delegate");

    // The same cities in another order are no change of rights.
    let res = app
        .patch_as(&path, &app.token, &json!({"cities": [city, second]}))
        .await;
    let first_change: Value = res.json().await.unwrap();
    assert!(first_change["changed_at"].is_i64(), "{first_change}");
    let res = app
        .patch_as(
            &path,
            &app.token,
            &json!({"cities": [second, city], "name": "Phone of Omar"}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["name"], "Phone of Omar");
    assert_eq!(
        app.hub.store.device(&delegate_id).unwrap().unwrap().rights,
        1,
        "reordering the cities counted as a change of rights"
    );

    // A person can be given and taken away; one the server has no record
    // of is refused, not kept to give no rights without a word.
    let typo = twinsync_shared::DocumentId::random();
    let res = app
        .patch_as(
            &path,
            &app.token,
            &json!({"person": format!("automerge:{typo}")}),
        )
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "unknown-person");
    // A device given a person or a name before those were checked can
    // still be changed otherwise: only what changes is checked.
    let legacy = app.device(Role::Delegate, &[city], Some("not-a-person"));
    let legacy = format!("/api/devices/{}", legacy.split('.').next().unwrap());
    app.hub
        .store
        .update_device(
            &app.hub
                .store
                .device(legacy.rsplit('/').next().unwrap())
                .unwrap()
                .unwrap(),
            &twinsync_server::auth::NewDevice {
                name: "old\tname".into(),
                role: Role::Delegate,
                cities: vec![city.to_owned()],
                person: Some("not-a-person".into()),
            },
            twinsync_tests::now(),
            0,
        )
        .unwrap()
        .unwrap();
    let res = app
        .patch_as(
            &legacy,
            &app.token,
            &json!({"role": "observer", "cities": []}),
        )
        .await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let res = app
        .patch_as(&legacy, &app.token, &json!({"name": "new\tname"}))
        .await;
    assert_eq!(res.status(), 400, "a changed name is checked");
    let person = app.first("person").await.to_string();
    let res = app
        .patch_as(
            &path,
            &app.token,
            &json!({"person": format!("automerge:{person}")}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["person"], person.as_str());
    assert_eq!(body["sockets_closed"], 0, "nothing was connected");
    let res = app
        .patch_as(&path, &app.token, &json!({"person": null}))
        .await;
    assert!(res.json::<Value>().await.unwrap()["person"].is_null());

    // The only coordinator can neither step down nor revoke itself until
    // another exists, and a coordinator whose token expired does not count.
    let me = app.get_json("/api/me").await;
    let mine = format!("/api/devices/{}", text(&me, "id"));
    let lapsed = app.device(Role::Coordinator, &[], None);
    let lapsed_id = lapsed.split('.').next().unwrap();
    app.hub
        .store
        .set_last_seen(lapsed_id, twinsync_tests::now() - 91 * 86_400)
        .unwrap();
    let res = app
        .patch_as(&mine, &app.token, &json!({"role": "observer"}))
        .await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert!(error(&body).contains("last coordinator"));
    // With the code the app says in the coordinator's language.
    assert_eq!(body["code"], "last-coordinator");
    let res = app
        .post_as(&format!("{mine}/revoke"), &app.token, &json!({}))
        .await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert!(error(&body).contains("last coordinator"));
    assert_eq!(body["code"], "last-coordinator");
    assert!(app.get_json("/api/me").await["revoked_at"].is_null());

    // An invite it made and nobody used yet ...
    let res = app
        .post_as(
            "/api/invites",
            &app.token,
            &json!({"name": "spare", "role": "coordinator"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let spare = text(&res.json::<Value>().await.unwrap(), "code").to_owned();
    let res = app
        .patch_as(&path, &app.token, &json!({"role": "coordinator"}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.get_as("/api/devices", &delegate).await.status(), 200);
    let res = app
        .patch_as(&mine, &delegate, &json!({"role": "observer"}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.get("/api/devices").await.status(), 403);
    // ... lapses when it steps down.
    let res = reqwest::Client::new()
        .post(app.url("/api/invites/redeem"))
        .json(&json!({"code": spare}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        410,
        "a former coordinator's invite still works"
    );

    // A revoked device is not changed.
    let res = app
        .post_as(&format!("{mine}/revoke"), &delegate, &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    // (Said so before its fields are checked: these would not do.)
    let res = app
        .patch_as(&mine, &delegate, &json!({"role": "delegate", "cities": []}))
        .await;
    assert_eq!(res.status(), 409);
    assert!(error(&res.json().await.unwrap()).contains("revoked"));
}

/// Peer ids are chosen by clients and seen by every member (`/api/changes`,
/// the sender of ephemeral messages). Another device joining under a phone's
/// id, while the phone is away or beside it, gets a session of its own: it
/// neither keeps the phone out nor pushes it off, and each hears the other.
#[tokio::test]
async fn a_peer_id_taken_by_another_device_keeps_no_one_out() {
    let app = spawn_app().await;
    let meeting = app.first("meeting").await;
    let mut owner = app.peer("shared-name");
    owner.connect(&app).await;
    owner.fetch(meeting, LIMIT).await;
    owner.disconnect().await;

    let other = app.device(Role::Observer, &[], None);
    let mut impostor = TestPeer::new("shared-name").with_token(&other);
    impostor.connect(&app).await;
    impostor.fetch(meeting, LIMIT).await;
    assert!(!impostor.seen.closed, "{:?}", impostor.seen.errors);

    // The phone comes back under its own id, and its edit is taken in.
    owner.connect(&app).await;
    owner.edit(
        meeting,
        "back online",
        &[Edit::SpliceText {
            path: "/minutes".into(),
            index: 0,
            delete: 0,
            insert: "عودة. ".into(),
        }],
    );
    let heads = owner.heads(meeting);
    owner.sync_until_acked(LIMIT, meeting, &heads).await;
    assert!(!owner.seen.closed, "{:?}", owner.seen.errors);
    assert!(owner.seen.errors.is_empty(), "{:?}", owner.seen.errors);
    // Relayed to the other device under the same peer id, which stays.
    impostor
        .sync_until(LIMIT, |p| p.has_changes(meeting, &heads))
        .await;
    assert!(impostor.has_changes(meeting, &heads));
    owner.sync(QUIET, LIMIT).await;
    assert!(!owner.seen.closed, "the other device pushed the owner off");
    assert!(!impostor.seen.closed, "{:?}", impostor.seen.errors);
}

#[tokio::test]
async fn a_device_opening_too_many_documents_a_minute_is_told_to_wait() {
    let app = spawn_app_with(|s| s.device_docs_per_minute = 3).await;
    let mut p = app.peer("greedy");
    p.connect(&app).await;
    let ids: Vec<DocumentId> = (0..5).map(|_| DocumentId::random()).collect();
    for id in &ids {
        p.open(*id);
    }
    let told = "more than 3 documents";
    // Each of the five is answered; then nothing more comes.
    p.settle(LIMIT, QUIET, |p| {
        p.seen.closed || p.seen.errors_with(told) + p.seen.unavailable.len() >= ids.len()
    })
    .await;
    let limited = p.seen.errors_with(told);
    assert_eq!(limited, 2, "{:?}", p.seen.errors);
    // Three the server lacks, and, as this client is not the app (it says
    // in its join that it answers no pings), the two refused for now: an
    // official client reads no refusal, and would wait for them.
    assert_eq!(p.seen.unavailable.len(), 5);
    assert!(!p.seen.closed);
}

#[tokio::test]
async fn the_first_start_prints_a_coordinator_invite_that_signs_in_once() {
    let data = tempfile::tempdir().unwrap();
    let (server, invite) = ServerProcess::start_bare(data.path());
    let link = invite.expect("the first start prints an invite link");
    assert!(
        link.starts_with(&format!("http://{}/#invite=", server.addr)),
        "{link}"
    );
    let code = link.split("#invite=").nth(1).unwrap();
    let res = reqwest::Client::new()
        .post(server.url("/api/invites/redeem"))
        .json(&json!({"code": code, "name": "Secretariat laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["device"]["role"], "coordinator");
    let token = text(&body, "token").to_owned();
    let devices = reqwest::Client::new()
        .get(server.url("/api/devices"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(devices.status(), 200);
    drop(server);
    // With a device provisioned, a restart prints no invite.
    let (_again, invite) = ServerProcess::start_bare(data.path());
    assert!(invite.is_none());
}

/// An operator who quiets the logs still gets the first coordinator's
/// link, and where the server listens.
#[tokio::test]
async fn the_first_invite_is_printed_with_the_logs_quieted() {
    let data = tempfile::tempdir().unwrap();
    let (server, invite) = ServerProcess::start_bare_with(data.path(), &[("RUST_LOG", "error")]);
    let link = invite.expect("the first start prints an invite link");
    assert!(
        link.starts_with(&format!("http://{}/#invite=", server.addr)),
        "{link}"
    );
}

/// The operator revokes the last coordinator from the command line, is
/// told so, and signs a new one in with an invite link made there, which
/// does not lapse when another device is made (as the server's first
/// invite does).
#[tokio::test]
async fn the_command_line_signs_a_coordinator_in_again_with_an_invite_link() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    let dir = data.path().to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(twinsync_tests::process::binary())
            .args(args)
            .args(["--data-dir", &dir])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{said}");
        (String::from_utf8(out.stdout).unwrap(), said)
    };
    let only = server.token.split('.').next().unwrap().to_owned();
    let (_, said) = run(&["device", "revoke", &only]);
    assert!(said.contains("no coordinator can sign in now"), "{said}");
    let (_, said) = run(&["device", "revoke", &only]);
    assert!(said.contains("already revoked"), "{said}");

    let base = server.url("");
    let invite = |name: &str| {
        let (out, said) = run(&[
            "device",
            "invite",
            "--role",
            "coordinator",
            "--name",
            name,
            "--public-url",
            &base,
        ]);
        assert!(said.contains("valid until"), "{said}");
        let link = out.lines().last().unwrap().trim().to_owned();
        assert!(link.starts_with(&format!("{base}/#invite=")), "{link}");
        link.split_once("#invite=").unwrap().1.to_owned()
    };
    let first = invite("Secretariat laptop");
    let second = invite("Council laptop");
    let redeem = |code: String| post_redeem(server.url("/api/invites/redeem"), code);
    let res = redeem(first).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["device"]["role"], "coordinator");
    let token = text(&body, "token").to_owned();
    let me = reqwest::Client::new()
        .get(server.url("/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    // A device made meanwhile does not end the operator's other invite.
    add_device(data.path(), "observer", &[]);
    assert_eq!(redeem(second).await.status(), 201);
    // A delegate's invite needs a city the database holds.
    let out = std::process::Command::new(twinsync_tests::process::binary())
        .args(["device", "invite", "--role", "delegate", "--name", "x"])
        .args(["--city", "Atlantis", "--data-dir", &dir])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Atlantis"));
}

/// An operator asked why a phone stopped syncing finds the answer in the
/// log: an expired token names its device, a wrong one its address, and an
/// address locked out for the minute is said once.
#[tokio::test]
async fn refused_sign_ins_are_logged_with_the_device_or_the_address() {
    let data = tempfile::tempdir().unwrap();
    let token = add_device(data.path(), "observer", &[]);
    let id = token.split('.').next().unwrap().to_owned();
    let store = twinsync_server::store::Store::open(&data.path().join("twinsync.db")).unwrap();
    store
        .set_last_seen(&id, twinsync_tests::now() - 91 * 86_400)
        .unwrap();
    drop(store);
    let server =
        ServerProcess::start_with(data.path(), &[("TWINSYNC_AUTH_FAILURES_PER_MINUTE", "3")]);
    let get_as = |token: &str| {
        reqwest::Client::new()
            .get(server.url("/api/records"))
            .bearer_auth(token)
            .send()
    };

    assert_eq!(get_as(&token).await.unwrap().status(), 401);
    let line = server
        .logged(&["sign-in refused", "expired", &id, "127.0.0.1"], LIMIT)
        .await;
    assert!(line.contains("test device"), "{line}");
    assert!(line.contains("last_seen_days_ago=91"), "{line}");

    assert_eq!(get_as("nosuchdevice.secret").await.unwrap().status(), 401);
    server
        .logged(
            &["no device has this token", "nosuchdevice", "127.0.0.1"],
            LIMIT,
        )
        .await;
    // Not even the shape of a token: the server makes none like it.
    assert_eq!(get_as("garbage").await.unwrap().status(), 401);
    server.logged(&["not one this server makes"], LIMIT).await;
    // The third failure reached the limit: said once, with the address.
    server
        .logged(&["too many failed sign-ins", "127.0.0.1"], LIMIT)
        .await;
    assert_eq!(get_as(&server.token).await.unwrap().status(), 429);
}

/// Bad tokens from many addresses (behind a proxy, or across an IPv6
/// /48) are refused every one, and logged only so many a minute.
#[tokio::test]
async fn refused_sign_ins_from_many_addresses_cannot_flood_the_log() {
    let data = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::start_with(data.path(), &[("TWINSYNC_TRUSTED_PROXIES", "127.0.0.1")]);
    let client = reqwest::Client::new();
    let over = twinsync_server::hub::REFUSALS_LOGGED as usize + 10;
    for n in 0..over {
        let res = client
            .get(server.url("/api/records"))
            .bearer_auth(format!("nosuchdevice{n}.secret"))
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    server
        .logged(&["more than", "refused sign-ins this minute"], LIMIT)
        .await;
    assert_eq!(
        server.count_logged(&["no device has this token"]),
        twinsync_server::hub::REFUSALS_LOGGED as usize
    );
    assert_eq!(server.count_logged(&["refused sign-ins this minute"]), 1);
}

#[tokio::test]
async fn the_command_line_lists_cities_by_name_and_a_lapsed_token_as_expired() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    drop(server);
    let token = add_device(data.path(), "delegate", &["--city", "Smara"]);
    let id = token.split('.').next().unwrap().to_owned();
    let dir = data.path().to_string_lossy();
    let row = |ttl: &str| {
        let out = twinsync([
            "device",
            "list",
            "--data-dir",
            &dir,
            "--token-ttl-days",
            ttl,
        ]);
        let out = String::from_utf8(out).unwrap();
        let row = out.lines().find(|l| l.starts_with(&id)).unwrap().to_owned();
        row.split('\t').map(str::to_owned).collect::<Vec<_>>()
    };
    let listed = row("90");
    assert_eq!(listed[3], "Smara", "{listed:?}");
    assert_eq!(listed[4], "active", "{listed:?}");
    // Not seen for longer than the server allows: its token no longer works.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(row("0")[4], "expired");

    // A mistyped --data-dir makes a new database, and says so.
    let elsewhere = data.path().join("typo");
    let out = std::process::Command::new(twinsync_tests::process::binary())
        .args([
            "device",
            "add",
            "--name",
            "Bureau",
            "--role",
            "coordinator",
            "--data-dir",
        ])
        .arg(&elsewhere)
        .output()
        .unwrap();
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("creating a new, empty one"), "{said}");
}

#[tokio::test]
async fn a_device_revoked_from_the_command_line_is_disconnected_by_the_running_server() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    let token = add_device(data.path(), "delegate", &["--city", "Smara"]);
    let id = token.split('.').next().unwrap().to_owned();
    let mut phone = TestPeer::new("cli-revoked").with_token(&token);
    phone.connect(&server).await;
    assert!(!phone.seen.closed);
    let dir = data.path().to_string_lossy();
    twinsync(["device", "revoke", "--data-dir", &dir, &id]);
    // The server looks every two seconds; give it a bounded while.
    phone
        .sync(Duration::from_secs(8), Duration::from_secs(8))
        .await;
    assert!(
        phone.seen.closed,
        "the socket of a revoked device stayed open"
    );
}

#[tokio::test]
async fn a_device_changed_from_the_command_line_signs_in_again_under_its_new_role() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    let token = add_device(data.path(), "observer", &[]);
    let id = token.split('.').next().unwrap().to_owned();
    let mut phone = TestPeer::new("cli-changed").with_token(&token);
    phone.connect(&server).await;
    let dir = data.path().to_string_lossy();
    let me = || async {
        let res = reqwest::Client::new()
            .get(server.url("/api/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        res.json::<Value>().await.unwrap()
    };
    assert_eq!(me().await["role"], "observer");
    twinsync([
        "device",
        "update",
        "--data-dir",
        &dir,
        &id,
        "--role",
        "delegate",
        "--city",
        "Smara",
    ]);
    // The server looks every two seconds; give it a bounded while.
    phone
        .sync(Duration::from_secs(8), Duration::from_secs(8))
        .await;
    assert!(phone.seen.closed, "the socket kept the observer's rights");
    let now = me().await;
    assert_eq!(now["role"], "delegate");
    assert_eq!(now["cities"].as_array().map(Vec::len), Some(1));

    // Signed in again, the socket stays open: it holds the new rights.
    phone.connect(&server).await;
    phone
        .sync(Duration::from_secs(5), Duration::from_secs(5))
        .await;
    assert!(
        !phone.seen.closed,
        "a socket under the new rights was closed"
    );
}

#[tokio::test]
async fn a_device_sending_more_bytes_a_minute_than_allowed_is_cut_off() {
    let app = spawn_app_with(|s| s.device_mib_per_minute = 1).await;
    let mut p = app.peer("flood");
    p.connect(&app).await;
    // About 3 MB of pseudo-random letters (over 1.5 MB compressed), in one record.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: String = (0..3_000_000)
        .map(|_| {
            // xorshift64: letters deflate cannot predict.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let id = p.create(
        Kind::Report,
        json!({"title": {"fr": "Trop long"}, "report_type": "field", "date": "2026-11-23", "text": noise}),
    );
    p.sync_until(LIMIT, |p| p.seen.closed).await;
    assert!(
        p.seen
            .errors
            .iter()
            .any(|e| e.contains("more than 1 MiB in a minute")),
        "{:?}",
        p.seen.errors
    );
    let res = app.get(&format!("/api/records/{id}")).await;
    assert_eq!(res.status(), 404);
    // Other devices are served meanwhile.
    let mut other = app.peer("calm");
    other.connect(&app).await;
    let city = app.first("city").await;
    other.fetch(city, LIMIT).await;
}

/// An HTTP client whose connections come from `local` (loopback answers
/// on all of 127/8).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// A GET of `/api/records` from `local`, saying it forwards for `client`:
/// its status.
async fn forwarded(app: &TestApp, local: &str, client: &str, token: &str) -> u16 {
    client_from(local)
        .get(app.url("/api/records"))
        .bearer_auth(token)
        .header("x-forwarded-for", client)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_counts_its_own_failed_sign_ins() {
    let app = spawn_app_with(|s| {
        s.auth_failures_per_minute = 3;
        s.trusted_proxies = vec!["127.0.0.2/32".parse().unwrap()];
    })
    .await;
    let proxy = "127.0.0.2";
    for i in 0..3 {
        assert_eq!(
            forwarded(&app, proxy, "198.51.100.1", &format!("guess.{i}")).await,
            401
        );
    }
    assert_eq!(
        forwarded(&app, proxy, "198.51.100.1", &app.token).await,
        429,
        "the guessing client waits"
    );
    assert_eq!(
        forwarded(&app, proxy, "198.51.100.2", &app.token).await,
        200,
        "another client behind the same proxy does not"
    );

    // From an address that is not the proxy, the header is ignored: a
    // guesser cannot pick a fresh address for each try.
    let direct = "127.0.0.3";
    for i in 0..3 {
        assert_eq!(
            forwarded(&app, direct, &format!("198.51.100.{}", 10 + i), "guess").await,
            401
        );
    }
    assert_eq!(
        forwarded(&app, direct, "198.51.100.20", &app.token).await,
        429
    );
}

#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_the_cap_on_connections_from_one_address() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|s| {
        s.max_http_connections_per_address = 2;
        s.trusted_proxies = vec!["127.0.0.4/32".parse().unwrap()];
    })
    .await;
    // Two connections each in their HTTP phase, from the proxy and from a
    // client; a third from each asks for the health check.
    let mut held = Vec::new();
    for local in ["127.0.0.4", "127.0.0.5"] {
        for _ in 0..2 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
            let mut s = socket.connect(app.addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            held.push(s);
        }
    }
    let health = |local: &'static str| {
        let url = app.url("/healthz");
        async move {
            client_from(local)
                .get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(health("127.0.0.4").await.ok(), Some(200), "the proxy");
    assert!(
        health("127.0.0.5").await.is_err(),
        "past its cap, a client's connection is closed"
    );
    drop(held);
}
