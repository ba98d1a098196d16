//! The profile API of `nudge serve` end to end: a store's website reads a
//! customer's chosen traits and segments with a read key; write keys,
//! wrong keys and unknown customers are refused; a trait the profile does
//! not declare stops the server before it starts.

mod common;
use common::{WRITE_KEY, basic_auth, copy_example, http_agent, nudge, start_server_with};

use nudge_test_support::text;
use serde_json::{Value, json};

const READ_KEY: &str = "website-read-key";

/// `GET /v1/profiles/ID` with `auth` as the Authorization header.
fn read(base: &str, id: &str, auth: Option<&str>) -> (u16, Value) {
    let mut req = http_agent().get(format!("{base}/v1/profiles/{id}"));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let mut resp = req.call().expect("the server answers");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

#[test]
fn the_website_reads_chosen_traits_and_segments_with_a_read_key() {
    let (_tmp, dir) = copy_example("win_back");
    let manifest = dir.join("nudge.toml");
    let mut toml = std::fs::read_to_string(&manifest).unwrap();
    toml.push_str(&format!(
        "\n[serve]\nread_keys = [\"{READ_KEY}\"]\nprofile_traits = [\"first_name\", \"total_spent\", \"city\"]\n"
    ));
    std::fs::write(&manifest, toml).unwrap();
    let server = start_server_with(&dir, &["--write-key", WRITE_KEY], &[]);
    let calls = json!({"batch": [
        {"type": "identify", "userId": "ann", "anonymousId": "device-1",
         "traits": {"email": "ann@example.com", "first_name": "Ann", "phone": "+15555550100"}},
        {"type": "track", "userId": "ann", "event": "Order Completed",
         "properties": {"order_id": "o1", "total": 420.10, "currency": "USD"}},
        {"type": "track", "userId": "ann", "event": "Order Completed",
         "properties": {"order_id": "o2", "total": "99.95", "currency": "USD"}},
    ]});
    let posted = http_agent()
        .post(format!("{}/v1/batch", server.base))
        .header("Authorization", &basic_auth())
        .header("Content-Type", "application/json")
        .send(calls.to_string())
        .unwrap();
    assert_eq!(posted.status().as_u16(), 200);

    // Answered from the engine as of the committed calls: 420.10 + 99.95
    // exactly, a chosen trait never set as null, the phone (not chosen)
    // left out, and the segment the total puts her in.
    let bearer = format!("Bearer {READ_KEY}");
    let (status, body) = read(&server.base, "ann", Some(&bearer));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "id": "ann",
            "traits": {"first_name": "Ann", "total_spent": "520.05", "city": null},
            "segments": ["vip"]
        })
    );
    // The device id and the email (encoded in the path) reach her too.
    for id in ["device-1", "ann%40example.com"] {
        let (status, other) = read(&server.base, id, Some(&bearer));
        assert_eq!(status, 200, "{other}");
        assert_eq!(other["traits"], body["traits"]);
        assert_eq!(other["segments"], body["segments"]);
    }

    let (status, body) = read(&server.base, "nobody", Some(&bearer));
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no customer has this id"))
    );
    // The write key is in every visitor's browser: it cannot read.
    let (status, body) = read(&server.base, "ann", Some(&basic_auth()));
    assert_eq!(status, 401, "{body}");
    let (status, _) = read(&server.base, "ann", Some(&format!("Bearer {WRITE_KEY}")));
    assert_eq!(status, 401);
    let (status, body) = read(&server.base, "ann", None);
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("read key"),
        "{body}"
    );
    server.terminate();
}

#[test]
fn without_read_keys_the_api_is_off_and_an_undeclared_trait_stops_the_start() {
    let (_tmp, dir) = copy_example("win_back");
    let server = start_server_with(&dir, &["--write-key", WRITE_KEY], &[]);
    let (status, body) = read(&server.base, "ann", Some("Bearer anything"));
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("[serve] read_keys"),
        "{body}"
    );
    server.terminate();

    let manifest = dir.join("nudge.toml");
    let mut toml = std::fs::read_to_string(&manifest).unwrap();
    toml.push_str("\n[serve]\nread_keys = [\"k\"]\nprofile_traits = [\"first_nme\"]\n");
    std::fs::write(&manifest, toml).unwrap();
    let refused = nudge(&["serve", dir.to_str().unwrap(), "--write-key", WRITE_KEY]);
    assert_eq!(refused.status.code(), Some(2));
    let said = text(&refused.stderr);
    assert!(
        said.contains("[serve] profile_traits: `first_nme` is not a profile trait (did you mean `first_name`?)"),
        "{said}"
    );
}

/// Posts to `/admin/reload` with a bearer token.
fn reload(base: &str, token: &str) -> (u16, Value) {
    let mut resp = http_agent()
        .post(format!("{base}/admin/reload"))
        .header("Authorization", &format!("Bearer {token}"))
        .send("")
        .expect("the request completes");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

#[test]
fn the_website_asks_for_recommendations_and_a_reload_reads_the_catalogue_again() {
    let (_tmp, dir) = copy_example("recommendations");
    let manifest = dir.join("nudge.toml");
    let mut toml = std::fs::read_to_string(&manifest).unwrap();
    toml.push_str(&format!(
        "\n[serve]\nread_keys = [\"{READ_KEY}\"]\nadmin_token = \"adm\"\n"
    ));
    std::fs::write(&manifest, toml).unwrap();
    let server = start_server_with(&dir, &["--write-key", WRITE_KEY], &[]);
    let order = |user: &str, id: &str, products: &[&str]| {
        json!({"type": "track", "userId": user, "event": "Order Completed",
               "properties": {"order_id": id, "products":
                   products.iter().map(|p| json!({"product_id": p})).collect::<Vec<_>>()}})
    };
    let calls = json!({"batch": [
        order("s1", "o1", &["beans-eth", "filters"]),
        order("s2", "o2", &["beans-eth", "filters", "mug"]),
        order("s3", "o3", &["beans-eth", "grinder"]),
        order("ann", "o4", &["beans-eth"]),
    ]});
    let posted = http_agent()
        .post(format!("{}/v1/batch", server.base))
        .header("Authorization", &basic_auth())
        .header("Content-Type", "application/json")
        .send(calls.to_string())
        .unwrap();
    assert_eq!(posted.status().as_u16(), 200);

    let bearer = format!("Bearer {READ_KEY}");
    let (status, body) = read(&server.base, "ann", Some(&bearer));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("recommendations").is_none(),
        "only when asked: {body}"
    );
    // Filters go with beans most; the grinder is out of stock in the file;
    // then the fallback list. Names and exact prices come from the file.
    let (status, body) = read(&server.base, "ann?recommendations=3", Some(&bearer));
    assert_eq!(status, 200, "{body}");
    let recs = &body["recommendations"];
    let picked: Vec<(&str, &str)> = recs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["product_id"].as_str().unwrap(),
                r["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        picked,
        [
            ("filters", "co_purchase"),
            ("mug", "co_purchase"),
            ("gift-card", "fallback")
        ]
    );
    assert_eq!(recs[0]["name"], "Paper Filters (100)");
    assert_eq!(recs[0]["price"], "4.50");
    assert_eq!(recs[0]["currency"], "USD");
    let (status, body) = read(&server.base, "ann?recommendations=0", Some(&bearer));
    assert_eq!(status, 400, "{body}");

    // The filters sell out: a reload reads the file again.
    let csv = dir.join("catalogue.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let sold_out = text.replace(
        "filters,Paper Filters (100),Brewing,4.50,USD,https://shop.example/p/filters,https://cdn.shop.example/filters.jpg,true",
        "filters,Paper Filters (100),Brewing,4.50,USD,https://shop.example/p/filters,https://cdn.shop.example/filters.jpg,false",
    );
    assert_ne!(sold_out, text);
    std::fs::write(&csv, &sold_out).unwrap();
    let (status, answer) = reload(&server.base, "adm");
    assert_eq!(status, 200, "{answer}");
    let (_, body) = read(&server.base, "ann?recommendations=1", Some(&bearer));
    assert_eq!(body["recommendations"][0]["product_id"], "mug", "{body}");

    // A file that no longer reads is refused with its line; the catalogue
    // read before stays.
    std::fs::write(
        &csv,
        format!("{sold_out}broken,Thing,Misc,twelve,USD,,,true\n"),
    )
    .unwrap();
    let (status, answer) = reload(&server.base, "adm");
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("catalogue.csv:11: price \"twelve\" is not an amount"),
        "{error}"
    );
    let (_, body) = read(&server.base, "ann?recommendations=1", Some(&bearer));
    assert_eq!(body["recommendations"][0]["product_id"], "mug", "{body}");
}
