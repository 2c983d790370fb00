use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use md5::Digest;
use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::json;

use super::client::{Challenge, USER_AGENT};
use super::*;

// RFC 7616 section 3.9.1.
const RFC_REALM: &str = "http-auth@example.org";
const RFC_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const RFC_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
const RFC_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
const PUBLIC: &str = "Mufasa";
const PRIVATE: &str = "Circle of Life";

// Constructors the product does not need: it reads its key from Secrets Manager (`with_secret`).
impl ApiKey {
    fn new(public_key: &str, private_key: &str) -> Self {
        Self { public_key: public_key.into(), private_key: private_key.into() }
    }
}

impl TiDBCloud {
    fn new(key: ApiKey, options: ClientOptions) -> Result<Self> {
        Self::build(options, Some(key), None)
    }
}

/// The parameters of a `Digest ...` header, unescaped.
fn params_of(header: &str) -> Vec<(String, String)> {
    let challenges = http_auth::parse_challenges(header).unwrap();
    assert_eq!(challenges.len(), 1, "{header}");
    challenges[0].params.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_unescaped())).collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 7616's response, computed here (not by the client's crate) for `params` answering a
/// challenge of `realm` and `nonce` with qop `auth`.
fn expected_response(algorithm: &str, method: &str, params: &[(String, String)], realm: &str, nonce: &str) -> String {
    let h = |data: String| match algorithm {
        "SHA-256" => hex(&sha2::Sha256::digest(data.as_bytes())),
        _ => hex(&md5::Md5::digest(data.as_bytes())),
    };
    let get = |name: &str| param(params, name).unwrap_or_default().to_owned();
    let ha1 = h(format!("{PUBLIC}:{realm}:{PRIVATE}"));
    let ha2 = h(format!("{method}:{}", get("uri")));
    h(format!("{ha1}:{nonce}:{}:{}:auth:{ha2}", get("nc"), get("cnonce")))
}

fn challenge(header: &'static str) -> Option<Challenge> {
    Challenge::pick(&HeaderMap::from_iter([(WWW_AUTHENTICATE, HeaderValue::from_static(header))]))
}

#[test]
fn one_call_fits_in_the_functions_timeout() {
    // The longest one call can take: a digest challenge, then every attempt timing out, with the
    // longest throttle wait between attempts. template.yaml gives the TiDB Cloud functions 120 s,
    // and scripts/check_definitions.py holds them above this figure.
    let ClientOptions { timeout, max_attempts, max_throttle_wait, .. } = ClientOptions::default();
    let worst_case = timeout * (1 + max_attempts) + max_throttle_wait * (max_attempts - 1);
    assert_eq!(worst_case, Duration::from_secs(80));
}

#[test]
fn digest_gives_the_rfc_7616_known_answers() {
    let rfc = |nc: &str| {
        [("uri", "/dir/index.html"), ("nc", nc), ("cnonce", RFC_CNONCE)].map(|(k, v)| (k.to_owned(), v.to_owned()))
    };
    assert_eq!(
        expected_response("MD5", "GET", &rfc("00000001"), RFC_REALM, RFC_NONCE),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
    assert_eq!(
        expected_response("SHA-256", "GET", &rfc("00000001"), RFC_REALM, RFC_NONCE),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );

    let key = ApiKey::new(PUBLIC, PRIVATE);
    for (algorithm, header) in [
        ("MD5", "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=MD5, \
            nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""),
        ("SHA-256", "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, \
            nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""),
    ] {
        let mut challenge = challenge(header).unwrap();
        for nc in ["00000001", "00000002"] {
            let answer = challenge.authorization(&key, &Method::GET, "/dir/index.html").unwrap();
            assert!(answer.is_sensitive());
            let answer = answer.to_str().unwrap().to_owned();
            let params = params_of(&answer);
            let response = expected_response(algorithm, "GET", &params, RFC_REALM, RFC_NONCE);
            assert_eq!(param(&params, "response"), Some(response.as_str()), "{answer}");
            assert_eq!(param(&params, "username"), Some(PUBLIC));
            assert_eq!(param(&params, "nc"), Some(nc), "the nonce count grows per request");
            assert_eq!(param(&params, "qop"), Some("auth"));
            assert_eq!(param(&params, "opaque"), Some(RFC_OPAQUE));
            assert_eq!(param(&params, "algorithm"), Some(algorithm));
            assert!(!answer.contains(PRIVATE));
        }
    }
}

#[test]
fn picks_sha256_among_several_challenges_and_names_the_algorithm_only_when_offered() {
    let key = ApiKey::new(PUBLIC, PRIVATE);
    let mut headers = HeaderMap::new();
    headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"x\""));
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Digest realm=\"tidb, cloud\", nonce=\"n-md5\", qop=\"auth,auth-int\", algorithm=MD5, \
             Digest realm=\"tidb, cloud\", nonce=\"n-\\\"sha\\\"\", qop=\"auth\", algorithm=SHA-256, opaque=\"o\"",
        ),
    );
    let answer = Challenge::pick(&headers).unwrap().authorization(&key, &Method::GET, "/p").unwrap();
    let params = params_of(answer.to_str().unwrap());
    assert_eq!(param(&params, "algorithm"), Some("SHA-256"));
    assert_eq!(param(&params, "realm"), Some("tidb, cloud"));
    assert_eq!(param(&params, "nonce"), Some("n-\"sha\""));
    assert_eq!(param(&params, "opaque"), Some("o"));

    // No algorithm offered means MD5, and the answer names none.
    let mut md5 = challenge("Digest realm=\"tidb.cloud\", qop=\"auth\", nonce=\"n\"").unwrap();
    let answer = md5.authorization(&key, &Method::GET, "/p").unwrap();
    let params = params_of(answer.to_str().unwrap());
    assert_eq!(param(&params, "algorithm"), None, "{answer:?}");
    assert_eq!(param(&params, "response"), Some(expected_response("MD5", "GET", &params, "tidb.cloud", "n").as_str()));

    assert!(challenge("Digest realm=r, nonce=n, qop=\"auth-int\"").is_none(), "auth-int only");
    assert!(challenge("Digest realm=r, nonce=m, algorithm=SHA-1").is_none(), "an unknown algorithm");
}

/// One request as the test server read it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A one-connection-per-request HTTP/1.1 server on 127.0.0.1 answering with `respond(request,
/// n)` (n counts from 1); enough to script TiDB Cloud's answers without a mocking crate.
fn serve(respond: impl Fn(&Seen, usize) -> String + Send + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(request) = read_request(&mut stream) else { continue };
            let n = {
                let mut log = log.lock().unwrap();
                log.push(request.clone());
                log.len()
            };
            let _ = stream.write_all(respond(&request, n).as_bytes());
        }
    });
    Server { url, seen }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen { method, target, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

fn reply(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// TiDB Cloud's challenge as reported: MD5, qop `auth`.
const CHALLENGE: &str = "Digest realm=\"tidb.cloud\", qop=\"auth\", algorithm=MD5, nonce=\"n-1\", opaque=\"o-1\"";
const SHA256_CHALLENGE: &str =
    "Digest realm=\"tidb.cloud\", qop=\"auth\", algorithm=SHA-256, nonce=\"n-1\", opaque=\"o-1\"";
const ZONES: &str = r#"{"accountId": "380838443567", "azIds": ["use1-az1", "use1-az4"]}"#;

/// Whether `request` carries a valid answer to `challenge` for the RFC's user, computed here
/// from the RFC's formula rather than by the client's crate.
fn authorized(request: &Seen, challenge: &str) -> bool {
    let Some(header) = request.header("authorization") else { return false };
    let (offered, params) = (params_of(challenge), params_of(header));
    let get = |name: &str| param(&offered, name).unwrap_or_default();
    let expected = expected_response(
        param(&offered, "algorithm").unwrap_or("MD5"),
        &request.method,
        &params,
        get("realm"),
        get("nonce"),
    );
    param(&params, "username") == Some(PUBLIC)
        && param(&params, "uri") == Some(request.target.as_str())
        && param(&params, "opaque") == Some(get("opaque"))
        && param(&params, "algorithm") == param(&offered, "algorithm")
        && param(&params, "response") == Some(expected.as_str())
}

fn client(server: &Server, key: ApiKey) -> TiDBCloud {
    let options = ClientOptions {
        base_url: format!("{}/", server.url),
        timeout: Duration::from_secs(5),
        max_attempts: 3,
        max_throttle_wait: Duration::from_secs(5),
    };
    TiDBCloud::new(key, options).unwrap()
}

fn rfc_key() -> ApiKey {
    ApiKey::new(PUBLIC, PRIVATE)
}

/// A server that insists on digest: for request n, `challenge(n)` for anything that does not
/// answer it, else `answer`.
fn digest_server(
    challenge: impl Fn(usize) -> &'static str + Send + 'static,
    answer: impl Fn(&Seen, usize) -> String + Send + 'static,
) -> Server {
    serve(move |request, n| {
        if authorized(request, challenge(n)) {
            answer(request, n)
        } else {
            reply(
                "401 Unauthorized",
                &[("WWW-Authenticate", challenge(n))],
                r#"{"code": 49900001, "message": "public_key not found", "details": []}"#,
            )
        }
    })
}

#[tokio::test]
async fn answers_the_challenge_then_reuses_the_nonce() {
    for offered in [CHALLENGE, SHA256_CHALLENGE] {
        let server = digest_server(move |_| offered, |_, _| reply("200 OK", &[], ZONES));
        let tidb = client(&server, rfc_key());

        let zones = tidb.availability_zones("10140100115280519574").await.unwrap();
        assert_eq!(zones.account_id, "380838443567");
        assert_eq!(zones.az_ids, ["use1-az1", "use1-az4"]);
        tidb.availability_zones("10140100115280519574").await.unwrap();

        let requests = server.requests();
        assert_eq!(requests.len(), 3, "challenge, answer, then the next call answers at once: {requests:?}");
        assert_eq!(requests[0].header("authorization"), None);
        assert_eq!(
            requests[1].target,
            "/v1beta1/clusters/10140100115280519574/privateLinkConnections:getAvailabilityZones"
        );
        assert_eq!(param(&params_of(requests[1].header("authorization").unwrap()), "nc"), Some("00000001"));
        assert_eq!(param(&params_of(requests[2].header("authorization").unwrap()), "nc"), Some("00000002"));
        assert!(requests.iter().all(|r| !format!("{r:?}").contains(PRIVATE)), "the private key never travels");
        assert!(requests.iter().all(|r| r.header("user-agent") == Some(USER_AGENT)));
        assert!(USER_AGENT.starts_with("tidb-privatelink/") && USER_AGENT.len() > "tidb-privatelink/".len());
    }
}

#[tokio::test]
async fn an_expired_nonce_is_answered_once_more() {
    const NEXT: &str =
        "Digest realm=\"tidb.cloud\", qop=\"auth\", algorithm=MD5, nonce=\"n-2\", opaque=\"o-1\", stale=true";
    let server = digest_server(|n| if n <= 2 { CHALLENGE } else { NEXT }, |_, _| reply("200 OK", &[], ZONES));
    let tidb = client(&server, rfc_key());
    tidb.availability_zones("1").await.unwrap();
    tidb.availability_zones("1").await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 4, "the old nonce, refused, then the new one: {requests:?}");
    let last = params_of(requests[3].header("authorization").unwrap());
    assert_eq!((param(&last, "nonce"), param(&last, "nc")), (Some("n-2"), Some("00000001")));
}

#[tokio::test]
async fn one_challenge_is_answered_per_call() {
    // After a 429, a fresh challenge is not answered again: one call stays within the worst case
    // that one_call_fits_in_the_functions_timeout counts.
    let server = digest_server(
        |n| if n <= 2 { CHALLENGE } else { SHA256_CHALLENGE },
        |_, _| reply("429 Too Many Requests", &[("Retry-After", "0")], "{}"),
    );
    let error = client(&server, rfc_key()).availability_zones("1").await.unwrap_err();
    assert_eq!(error.name(), "TiDBCloudUnauthorized", "{error}");
    assert_eq!(server.requests().len(), 3, "challenge, answer (429), then the new challenge ends it");
}

#[tokio::test]
async fn wrong_key_is_unauthorized_after_one_retry() {
    let server = digest_server(|_| CHALLENGE, |_, _| reply("200 OK", &[], ZONES));
    let secret = "not-the-private-key-0123456789";
    let tidb = client(&server, ApiKey::new(PUBLIC, secret));

    let error = tidb.availability_zones("1").await.unwrap_err();
    assert_eq!(error.name(), "TiDBCloudUnauthorized");
    assert!(!error.is_transient());
    assert!(error.to_string().contains("public_key not found"), "{error}");
    assert!(!error.to_string().contains(secret) && !format!("{error:?}").contains(secret));
    assert_eq!(server.requests().len(), 2, "one challenge answered, then give up");
}

#[tokio::test]
async fn status_bodies_become_named_errors() {
    let server = serve(|request, _| match request.target.as_str() {
        t if t.ends_with("/bad") => {
            reply("400 Bad Request", &[], r#"{"code": 3, "message": "invalid endpoint service name", "details": []}"#)
        }
        t if t.ends_with("/gone") => {
            reply("404 Not Found", &[], r#"{"code": 5, "message": "private link connection not found"}"#)
        }
        _ => reply("503 Service Unavailable", &[], "upstream connect error"),
    });
    let tidb = client(&server, rfc_key());

    let error = tidb.get_private_link_connection("1", "bad").await.unwrap_err();
    let StepError::TiDBCloudRequestFailed { status, code, message, .. } = &error else { panic!("{error:?}") };
    assert_eq!((*status, code.as_str(), message.as_str()), (400, "3", "invalid endpoint service name"));
    assert!(!error.is_transient());

    let error = tidb.get_private_link_connection("1", "gone").await.unwrap_err();
    assert_eq!(error.name(), "TiDBCloudNotFound");
    assert!(error.to_string().contains("private link connection not found"), "{error}");

    let error = tidb.get_private_link_connection("1", "plc-1").await.unwrap_err();
    assert_eq!(error.name(), "TiDBCloudUnavailable");
    assert!(error.is_transient() && error.to_string().contains("upstream connect error"), "{error}");
}

#[tokio::test]
async fn waits_as_retry_after_says_then_succeeds() {
    let server = serve(|_, n| match n {
        1 => reply(
            "429 Too Many Requests",
            &[("Retry-After", "1"), ("X-Ratelimit-Limit-Minute", "100"), ("X-Ratelimit-Remaining-Minute", "0")],
            r#"{"code": 49900007, "message": "rate limit exceeded"}"#,
        ),
        _ => reply("200 OK", &[], ZONES),
    });
    let started = Instant::now();
    let zones = client(&server, rfc_key()).availability_zones("1").await.unwrap();
    assert_eq!(zones.account_id, "380838443567");
    assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn waits_for_the_rate_limit_reset_without_retry_after() {
    let server = serve(|_, n| match n {
        1 => reply("429 Too Many Requests", &[("X-Ratelimit-Reset", "1")], r#"{"code": 49900007, "message": "slow"}"#),
        _ => reply("200 OK", &[], ZONES),
    });
    let started = Instant::now();
    client(&server, rfc_key()).availability_zones("1").await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
}

#[tokio::test]
async fn throttled_for_good_is_throttled_after_the_attempts() {
    let server = serve(|_, _| {
        reply(
            "429 Too Many Requests",
            &[("Retry-After", "0"), ("X-Ratelimit-Limit-Minute", "100"), ("X-Ratelimit-Reset", "0")],
            r#"{"code": 49900007, "message": "The request exceeded the limit of 100 times per apikey per minute."}"#,
        )
    });
    let error = client(&server, rfc_key()).availability_zones("1").await.unwrap_err();
    assert_eq!(error.name(), "TiDBCloudThrottled");
    assert!(error.is_transient());
    assert!(error.to_string().contains("limit 100 requests a minute"), "{error}");
    assert_eq!(server.requests().len(), 3, "max_attempts bounds the retries");
}

#[tokio::test]
async fn a_long_wait_is_left_to_the_state_machine() {
    let server = serve(|_, _| reply("429 Too Many Requests", &[("Retry-After", "60")], "{}"));
    let started = Instant::now();
    let error = client(&server, rfc_key()).availability_zones("1").await.unwrap_err();
    assert_eq!(error.name(), "TiDBCloudThrottled");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn silence_and_refusal_are_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Accepts, reads nothing, never answers.
    std::thread::spawn(move || {
        let _held: Vec<_> = listener.incoming().collect();
    });
    let options = ClientOptions { base_url: url, timeout: Duration::from_millis(300), ..ClientOptions::default() };
    let error = TiDBCloud::new(rfc_key(), options).unwrap().availability_zones("1").await.unwrap_err();
    assert_eq!(error.name(), "TiDBCloudUnavailable");
    assert!(error.to_string().contains("within 300 ms"), "{error}");

    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let options = ClientOptions { base_url: format!("http://{closed}"), ..ClientOptions::default() };
    let error = TiDBCloud::new(rfc_key(), options).unwrap().availability_zones("1").await.unwrap_err();
    assert_eq!(error.name(), "TiDBCloudUnavailable", "{error}");
}

const PENDING: &str = r#"{"privateLinkConnectionId": "plc-7f3a", "clusterId": "42", "displayName": "orders-db",
    "state": "PENDING_ACCEPTANCE", "type": "AWS_ENDPOINT_SERVICE", "createTime": "2026-05-01T10:00:00Z",
    "awsEndpointService": {"name": "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0",
                           "region": "us-east-1", "endpointId": "vpce-0a1b2c3d4e5f60718",
                           "availabilityZoneIds": ["use1-az1"]}}"#;

#[tokio::test]
async fn creates_with_the_documented_body_and_reads_states() {
    let server = serve(|request, _| match request.method.as_str() {
        "POST" => reply(
            "200 OK",
            &[],
            r#"{"privateLinkConnectionId": "plc-7f3a", "clusterId": "42", "displayName": "orders-db",
                "state": "CREATING", "type": "AWS_ENDPOINT_SERVICE",
                "awsEndpointService": {"name": "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"}}"#,
        ),
        // The DELETE answer's body is not read: this one is not even JSON.
        "DELETE" => reply("200 OK", &[], "deleting"),
        _ => reply("200 OK", &[], &PENDING.replace("PENDING_ACCEPTANCE", "SOMETHING_NEW")),
    });
    let tidb = client(&server, rfc_key());
    let service = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0";

    let created = tidb.create_private_link_connection("42", "orders-db", service).await.unwrap();
    assert_eq!((created.state, created.endpoint_id()), (ConnectionState::Creating, None));
    let request = &server.requests()[0];
    assert_eq!(request.target, "/v1beta1/clusters/42/privateLinkConnections");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(
        body,
        json!({"privateLinkConnection": {"clusterId": "42", "displayName": "orders-db",
            "type": "AWS_ENDPOINT_SERVICE", "awsEndpointService": {"name": service}}})
    );

    let pending: PrivateLinkConnection = serde_json::from_str(PENDING).unwrap();
    assert_eq!(pending.state, ConnectionState::PendingAcceptance);
    assert_eq!(pending.endpoint_id(), Some("vpce-0a1b2c3d4e5f60718"));
    assert_eq!(pending.endpoint_service_name(), Some(service));

    let later = tidb.get_private_link_connection("42", "plc-7f3a").await.unwrap();
    assert_eq!(later.state, ConnectionState::Unknown, "a new state is not an error");
    tidb.delete_private_link_connection("42", "plc-7f3a").await.unwrap();
    let requests = server.requests();
    assert_eq!(
        (requests[2].method.as_str(), requests[2].target.as_str()),
        ("DELETE", "/v1beta1/clusters/42/privateLinkConnections/plc-7f3a")
    );
}

#[test]
fn only_cluster_display_name_and_type_are_required() {
    let bare: PrivateLinkConnection =
        serde_json::from_str(r#"{"clusterId": "42", "displayName": "d", "type": "AWS_ENDPOINT_SERVICE"}"#).unwrap();
    assert_eq!((bare.private_link_connection_id.as_str(), bare.state), ("", ConnectionState::Unknown));
    assert_eq!((bare.endpoint_id(), bare.endpoint_service_name()), (None, None));
    for required in ["clusterId", "displayName", "type"] {
        let mut document: serde_json::Value = serde_json::from_str(PENDING).unwrap();
        document.as_object_mut().unwrap().remove(required);
        assert!(serde_json::from_value::<PrivateLinkConnection>(document).is_err(), "{required}");
    }
}

#[tokio::test]
async fn a_conflict_on_create_finds_the_existing_connection() {
    let server = serve(|request, _| match request.method.as_str() {
        "POST" => reply("409 Conflict", &[], r#"{"code": 6, "message": "already exists", "details": []}"#),
        _ => reply("200 OK", &[], &format!(r#"{{"privateLinkConnections": [{PENDING}]}}"#)),
    });
    let tidb = client(&server, rfc_key());
    let service = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0";
    let found = tidb.create_private_link_connection("42", "orders-db", service).await.unwrap();
    assert_eq!(found.private_link_connection_id, "plc-7f3a");
    assert_eq!(server.requests()[1].method, "GET");

    let error = tidb.create_private_link_connection("42", "orders-db", "com.amazonaws.vpce.x.vpce-svc-1").await;
    let error = error.unwrap_err();
    assert!(matches!(error, StepError::TiDBCloudRequestFailed { status: 409, .. }), "none found: {error:?}");
}

#[tokio::test]
async fn lists_every_page_and_finds_by_service_name() {
    let server = serve(|request, _| {
        if request.target.contains("pageToken=next%2Fpage") {
            reply("200 OK", &[], &format!(r#"{{"privateLinkConnections": [{PENDING}], "totalSize": 2}}"#))
        } else {
            let failed = PENDING
                .replace("plc-7f3a", "plc-0001")
                .replace("PENDING_ACCEPTANCE", "FAILED")
                .replace("vpce-svc-0123456789abcdef0", "vpce-svc-0000000000000000f");
            reply(
                "200 OK",
                &[],
                &format!(r#"{{"privateLinkConnections": [{failed}], "nextPageToken": "next/page", "totalSize": 2}}"#),
            )
        }
    });
    let tidb = client(&server, rfc_key());
    let all = tidb.list_private_link_connections("42").await.unwrap();
    assert_eq!(all.iter().map(|c| c.private_link_connection_id.as_str()).collect::<Vec<_>>(), ["plc-0001", "plc-7f3a"]);
    assert_eq!(server.requests()[0].target, "/v1beta1/clusters/42/privateLinkConnections?pageSize=100");

    let found = tidb
        .find_private_link_connection("42", "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0", None)
        .await
        .unwrap();
    assert_eq!(found.map(|c| c.private_link_connection_id), Some("plc-7f3a".into()));
    assert_eq!(
        tidb.find_private_link_connection("42", "com.amazonaws.vpce.us-east-1.vpce-svc-1", None).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_known_connection_is_read_alone_and_the_list_is_read_only_once_it_is_gone() {
    const SERVICE: &str = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0";
    let server = serve(|request, _| match request.target.as_str() {
        "/v1beta1/clusters/42/privateLinkConnections/plc-7f3a" => reply("200 OK", &[], PENDING),
        "/v1beta1/clusters/42/privateLinkConnections/plc-gone" => {
            reply("404 Not Found", &[], r#"{"code": 5, "message": "not found"}"#)
        }
        _ => reply("200 OK", &[], &format!(r#"{{"privateLinkConnections": [{PENDING}]}}"#)),
    });
    let tidb = client(&server, rfc_key());
    let targets = || server.requests().into_iter().map(|r| r.target).collect::<Vec<_>>();

    let found = tidb.find_private_link_connection("42", SERVICE, Some("plc-7f3a")).await.unwrap();
    assert_eq!(found.map(|c| c.private_link_connection_id), Some("plc-7f3a".into()));
    assert_eq!(targets(), ["/v1beta1/clusters/42/privateLinkConnections/plc-7f3a"], "no list");

    let other = tidb.find_private_link_connection("42", "com.amazonaws.vpce.us-east-1.vpce-svc-1", Some("plc-7f3a"));
    assert_eq!(other.await.unwrap(), None, "a known ID of another service's connection is not it");
    let found = tidb.find_private_link_connection("42", SERVICE, Some("plc-gone")).await.unwrap();
    assert_eq!(found.map(|c| c.private_link_connection_id), Some("plc-7f3a".into()));
    let list = "/v1beta1/clusters/42/privateLinkConnections?pageSize=100";
    assert_eq!(
        targets()[1..],
        [
            "/v1beta1/clusters/42/privateLinkConnections/plc-7f3a",
            list,
            "/v1beta1/clusters/42/privateLinkConnections/plc-gone",
            list,
        ]
    );
}

#[tokio::test]
async fn a_page_token_handed_back_again_ends_the_listing() {
    let page = format!(r#"{{"privateLinkConnections": [{PENDING}], "nextPageToken": "again"}}"#);
    let server = serve(move |_, _| reply("200 OK", &[], &page));
    let all = client(&server, rfc_key()).list_private_link_connections("42").await.unwrap();
    let targets: Vec<_> = server.requests().into_iter().map(|r| r.target).collect();
    let first = "/v1beta1/clusters/42/privateLinkConnections?pageSize=100";
    assert_eq!(targets, [first.to_owned(), format!("{first}&pageToken=again")], "no third request for the same page");
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn ids_that_would_change_the_path_are_refused_before_sending() {
    let server = serve(|_, _| reply("200 OK", &[], ZONES));
    let tidb = client(&server, rfc_key());
    for id in ["", "../other", "1/privateLinkConnections", "1?x=y", "a b"] {
        let error = tidb.availability_zones(id).await.unwrap_err();
        assert_eq!(error.name(), "InvalidInput", "{id:?}");
    }
    assert_eq!(tidb.get_private_link_connection("1", "..").await.unwrap_err().name(), "InvalidInput");
    assert!(server.requests().is_empty());
}

#[test]
fn the_private_key_never_shows() {
    let secret = "sk-this-must-stay-hidden";
    let key = ApiKey::new("PUB123", secret);
    assert_eq!(format!("{key:?}"), r#"ApiKey { public_key: "PUB123", private_key: SecretBox<str>([REDACTED]) }"#);

    let parsed =
        ApiKey::from_secret_json("tidb", &format!(r#"{{"public_key": " PUB123 ", "private_key": "{secret}"}}"#));
    let parsed = parsed.unwrap();
    let pair = |key: &ApiKey| (key.public_key.clone(), key.private_key.expose_secret().to_owned());
    assert_eq!(pair(&parsed), pair(&key), "keys are trimmed");
    for malformed in [
        format!(r#"{{"public_key": 7, "private_key": "{secret}"}}"#),
        format!(r#"{{"publicKey": "PUB123", "private_key": "{secret}"}}"#),
        format!(r#"{{"public_key": "PUB123", "private_key": {secret}}}"#),
        format!(r#"{{"public_key": "", "private_key": "{secret}"}}"#),
    ] {
        let error = ApiKey::from_secret_json("tidb", &malformed).unwrap_err();
        assert_eq!(error.name(), "Misconfigured");
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(secret) && !shown.contains("PUB123"), "{shown}");
        assert!(shown.contains("secret tidb must be JSON"), "{shown}");
    }
    let tidb = TiDBCloud::new(key, ClientOptions::default()).unwrap();
    assert!(!format!("{tidb:?}").contains(secret));
}

#[test]
fn calls_can_run_inside_a_lambda_step() {
    fn send<T: Send>(_: &T) {}
    fn shared<T: Send + Sync>() {}
    shared::<TiDBCloud>();
    let tidb = TiDBCloud::new(rfc_key(), ClientOptions::default()).unwrap();
    send(&tidb.availability_zones("1"));
    send(&tidb.create_private_link_connection("1", "d", "s"));
    send(&tidb.list_private_link_connections("1"));
}

#[test]
fn a_bad_base_url_is_misconfiguration() {
    for url in ["", "serverless.tidbapi.com", "ftp://serverless.tidbapi.com"] {
        let options = ClientOptions { base_url: url.into(), ..ClientOptions::default() };
        assert_eq!(TiDBCloud::new(rfc_key(), options).unwrap_err().name(), "Misconfigured", "{url:?}");
    }
}
