//! Test harness: one emulator (moto with the project's extension, `tests/emulator/`) per test
//! binary, started on 127.0.0.1 and stopped when the test process exits; a fresh AWS account per
//! test so tests run in parallel without resetting shared state; and a realistic network with a
//! MySQL RDS instance to provision.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification, VpcEndpointType};
use aws_sdk_rds::operation::create_db_cluster::builders::CreateDBClusterFluentBuilder;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tidb_privatelink::naming::MANAGED_BY_TAG;
use tidb_privatelink::settings::Sharing;
use tidb_privatelink::steps::endpoint_service::CreateEndpointService;
use tidb_privatelink::steps::health_check::CheckTargetHealth;
use tidb_privatelink::steps::inspect_database::InspectDatabase;
use tidb_privatelink::steps::load_balancer::CreateLoadBalancer;
use tidb_privatelink::steps::plan_zones::PlanZones;
use tidb_privatelink::steps::security_groups::CreateSecurityGroups;
use tidb_privatelink::steps::target_group::CreateTargetGroup;
use tidb_privatelink::steps::tidb_cloud_connection::ConnectTiDBCloud;
use tidb_privatelink::teardown::endpoint_service::RemoveEndpointService;
use tidb_privatelink::teardown::load_balancer::RemoveLoadBalancer;
use tidb_privatelink::teardown::security_groups::RemoveSecurityGroups;
use tidb_privatelink::teardown::target_group::RemoveTargetGroup;
use tidb_privatelink::teardown::tidb_cloud_connection::RemoveTiDBCloudConnection;
use tidb_privatelink::Step;
use tidb_privatelink::{Settings, StepError};

pub const REGION: &str = "us-east-1";
pub const STACK: &str = "tidb-privatelink-test";
pub const TIDB_CLOUD_ACCOUNT: &str = "380838443567";
/// TiDB Cloud's zones in the tests: az1 and az2 overlap the test VPC (us-east-1b, 1c), az4 does not.
pub const TIDB_CLOUD_AZ_IDS: [&str; 3] = ["use1-az1", "use1-az2", "use1-az4"];

pub struct Emulator {
    pub endpoint: String,
    pub dns: SocketAddr,
}

static EMULATOR: OnceLock<Emulator> = OnceLock::new();

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The emulator of this test process, started on first use. It watches our PID and exits with us.
pub fn emulator() -> &'static Emulator {
    EMULATOR.get_or_init(|| {
        let python = root().join(".venv/bin/python");
        assert!(python.exists(), "{} is missing: run scripts/setup first", python.display());
        let log = log_path(&format!("emulator-{}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).unwrap();
        // Port 0: the emulator binds free ports itself and says which. A port picked here and freed
        // for it to bind could be taken meanwhile (an outgoing connection's ephemeral port).
        Command::new(python)
            .arg(root().join("tests/emulator/launch.py"))
            .args(["--port", "0", "--dns-port", "0"])
            .args(["--watch-pid", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start the emulator");
        let (port, dns_port) = wait_until_ready(&log);
        let endpoint = format!("http://127.0.0.1:{port}");
        CHECKED_PORT.store(u64::from(port), Ordering::SeqCst);
        // SAFETY: registers a plain function with the C runtime, which calls it at exit.
        unsafe { atexit(fail_on_emulator_problems) };
        Emulator { endpoint, dns: SocketAddr::from(([127, 0, 0, 1], dns_port)) }
    })
}

static CHECKED_PORT: AtomicU64 = AtomicU64::new(0);

extern "C" {
    fn atexit(callback: extern "C" fn()) -> i32;
    fn _exit(status: i32) -> !;
}

/// At the test binary's exit: if the emulator met problems (a crash, a 5xx answer, an exception it
/// logged, a product call it cannot authorize), the run fails even when every test passed.
extern "C" fn fail_on_emulator_problems() {
    let port = CHECKED_PORT.load(Ordering::SeqCst) as u16;
    let Some(reply) = http_get(port, "/_emulator/problems") else { return };
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("[]");
    let problems: Vec<String> = serde_json::from_str(body).unwrap_or_default();
    if !problems.is_empty() {
        eprintln!("the emulator met problems:\n{}", problems.join("\n"));
        // SAFETY: ends the process at once with a failing status, as a failed test run does.
        unsafe { _exit(101) };
    }
}

fn log_path(name: &str) -> PathBuf {
    let dir = root().join("target/test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The HTTP and DNS ports of the emulator, from the `{"event": "ready", ...}` line it writes to
/// its log once both servers listen.
fn wait_until_ready(log: &Path) -> (u16, u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let ready = text.lines().filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok());
        if let Some(ready) = ready.into_iter().find(|value| value["event"] == "ready") {
            let port = |key: &str| ready[key].as_u64().and_then(|p| u16::try_from(p).ok()).expect("a port");
            return (port("port"), port("dns_port"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the emulator did not answer within 60 s; its log: {}", std::fs::read_to_string(log).unwrap_or_default());
}

/// The body of a plain-HTTP GET to a loopback URL (the test servers' control routes).
pub fn http_get_url(url: &str) -> String {
    http_request(url, "GET", "")
}

pub fn http_post_url(url: &str, body: &str) -> String {
    http_request(url, "POST", body)
}

fn http_request(url: &str, method: &str, body: &str) -> String {
    let rest = url.strip_prefix("http://").expect("a plain-HTTP URL");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    assert!(head.contains(" 200 ") || head.contains(" 204 "), "{method} {url}: {head}");
    body.to_owned()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    Some(reply)
}

/// An SDK configuration for the emulator. SDK retries are off so that a failure shows at once.
pub async fn sdk_config(credentials: aws_sdk_sts::config::Credentials) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(tidb_privatelink::tls::aws_http_client())
        .region(Region::new(REGION))
        .endpoint_url(&emulator().endpoint)
        .credentials_provider(credentials)
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}

/// A new, empty AWS account in the emulator.
pub async fn fresh_account() -> SdkConfig {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let seed = nanos
        ^ (u64::from(std::process::id()) << 20)
        ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    account(&format!("{:012}", seed % 900_000_000_000 + 100_000_000_000)).await
}

/// Acts as AWS account `id` in the emulator: the account is bootstrapped with an administrator
/// role (as AWS Organizations makes a member account), which the management account assumes.
pub async fn account(id: &str) -> SdkConfig {
    let bootstrapped =
        http_post_url(&format!("{}/_emulator/accounts", emulator().endpoint), &json!({"account_id": id}).to_string());
    let role_arn = serde_json::from_str::<Value>(&bootstrapped).unwrap()["role_arn"].as_str().unwrap().to_owned();
    let management = sdk_config(aws_sdk_sts::config::Credentials::new("testing", "testing", None, None, "tests")).await;
    let assumed = aws_sdk_sts::Client::new(&management)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("tests")
        .send()
        .await
        .expect("assume a role in the account");
    let c = assumed.credentials().expect("credentials");
    sdk_config(aws_sdk_sts::config::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        None,
        "assumed",
    ))
    .await
}

/// A VPC in three zones (us-east-1a/b/c = use1-az6/az1/az2), a DB subnet group over them, the
/// database's security group, and the stack's notification topic.
pub struct Network {
    pub sdk: SdkConfig,
    pub vpc_id: String,
    pub subnets: Vec<(String, String, String)>,
    pub db_security_group_id: String,
    pub subnet_group: String,
    pub topic_arn: String,
}

impl Network {
    pub async fn new() -> Self {
        let sdk = fresh_account().await;
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let vpc = ec2.create_vpc().cidr_block("10.42.0.0/16").send().await.unwrap();
        let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
        let mut subnets = Vec::new();
        for (i, zone) in ["us-east-1a", "us-east-1b", "us-east-1c"].iter().enumerate() {
            let out = ec2
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(format!("10.42.{}.0/24", i + 1))
                .availability_zone(*zone)
                .send()
                .await
                .unwrap();
            let subnet = out.subnet().unwrap();
            subnets.push((
                subnet.subnet_id().unwrap().to_owned(),
                zone.to_string(),
                subnet.availability_zone_id().unwrap().to_owned(),
            ));
        }
        let sg = ec2
            .create_security_group()
            .group_name("orders-db")
            .description("database")
            .vpc_id(&vpc_id)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .tags(Tag::builder().key("team").value("orders").build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let subnet_group = "orders-subnets".to_owned();
        aws_sdk_rds::Client::new(&sdk)
            .create_db_subnet_group()
            .db_subnet_group_name(&subnet_group)
            .db_subnet_group_description("orders")
            .set_subnet_ids(Some(subnets.iter().map(|s| s.0.clone()).collect()))
            .send()
            .await
            .unwrap();
        let topic = aws_sdk_sns::Client::new(&sdk).create_topic().name("connections").send().await.unwrap();
        Self {
            vpc_id,
            subnets,
            db_security_group_id: sg.group_id().unwrap().to_owned(),
            subnet_group,
            topic_arn: topic.topic_arn().unwrap().to_owned(),
            sdk,
        }
    }

    /// Creates an RDS instance in this network and returns its identifier.
    pub async fn database(&self, identifier: &str, engine: &str, publicly_accessible: bool) -> String {
        self.create_database(identifier, engine, publicly_accessible, false, "us-east-1b").await
    }

    /// A Multi-AZ MySQL instance, which can fail over to a standby with another address.
    pub async fn multi_az_database(&self, identifier: &str) -> String {
        self.create_database(identifier, "mysql", false, true, "us-east-1b").await
    }

    /// A MySQL instance in availability zone `zone` (a name, e.g. `us-east-1a`).
    pub async fn database_in_zone(&self, identifier: &str, zone: &str) -> String {
        self.create_database(identifier, "mysql", false, false, zone).await
    }

    async fn create_database(
        &self,
        identifier: &str,
        engine: &str,
        publicly_accessible: bool,
        multi_az: bool,
        zone: &str,
    ) -> String {
        aws_sdk_rds::Client::new(&self.sdk)
            .create_db_instance()
            .multi_az(multi_az)
            .db_instance_identifier(identifier)
            .engine(engine)
            .engine_version(match engine {
                "mariadb" => "10.11.6",
                "postgres" => "16.3",
                _ => "8.0.35",
            })
            .db_instance_class("db.t3.micro")
            .allocated_storage(20)
            .master_username("admin")
            .master_user_password("not-a-real-secret-1")
            .db_subnet_group_name(&self.subnet_group)
            .vpc_security_group_ids(&self.db_security_group_id)
            .availability_zone(zone)
            .publicly_accessible(publicly_accessible)
            .send()
            .await
            .unwrap();
        identifier.to_owned()
    }

    /// An Aurora MySQL cluster in this network (the database's security group, the DB subnet
    /// group) with a writer `<id>-1` in us-east-1b and a reader `<id>-2` in us-east-1a; returns
    /// its workflow key, `cluster:<id>`.
    pub async fn aurora_cluster(&self, identifier: &str) -> String {
        let rds = aws_sdk_rds::Client::new(&self.sdk);
        self.create_cluster(identifier, "aurora-mysql").send().await.unwrap();
        for (number, zone) in [(1, "us-east-1b"), (2, "us-east-1a")] {
            rds.create_db_instance()
                .db_instance_identifier(format!("{identifier}-{number}"))
                .db_cluster_identifier(identifier)
                .engine("aurora-mysql")
                .db_instance_class("db.r6g.large")
                .availability_zone(zone)
                .send()
                .await
                .unwrap();
        }
        format!("cluster:{identifier}")
    }

    /// A CreateDBCluster request for a cluster in this network (the DB subnet group, the
    /// database's security group), to complete and send.
    pub fn create_cluster(&self, identifier: &str, engine: &str) -> CreateDBClusterFluentBuilder {
        aws_sdk_rds::Client::new(&self.sdk)
            .create_db_cluster()
            .db_cluster_identifier(identifier)
            .engine(engine)
            .master_username("admin")
            .master_user_password("not-a-real-secret-1")
            .db_subnet_group_name(&self.subnet_group)
            .vpc_security_group_ids(&self.db_security_group_id)
    }

    /// The private IP of the RDS network interface in `zone` (one database per zone).
    pub async fn interface_ip_in_zone(&self, zone: &str) -> String {
        let out = aws_sdk_ec2::Client::new(&self.sdk)
            .describe_network_interfaces()
            .filters(Filter::builder().name("vpc-id").values(&self.vpc_id).build())
            .filters(Filter::builder().name("description").values("RDSNetworkInterface").build())
            .filters(Filter::builder().name("availability-zone").values(zone).build())
            .send()
            .await
            .unwrap();
        let [interface] = out.network_interfaces() else { panic!("one RDS interface expected in {zone}: {out:?}") };
        interface.private_ip_address().unwrap().to_owned()
    }

    pub fn settings(&self) -> Settings {
        Settings {
            stack_name: STACK.into(),
            tidb_cloud_account_id: Some(TIDB_CLOUD_ACCOUNT.into()),
            tidb_cloud_az_ids: TIDB_CLOUD_AZ_IDS.iter().map(|s| s.to_string()).collect(),
            connection_topic_arn: Some(self.topic_arn.clone()),
            dns_resolver: Some(emulator().dns),
            opt_in_tag_key: "tidb-privatelink".into(),
            ..Settings::default()
        }
    }

    /// This network's AWS account ID.
    pub async fn sdk_account(&self) -> String {
        let identity = aws_sdk_sts::Client::new(&self.sdk).get_caller_identity().send().await.unwrap();
        identity.account().unwrap().to_owned()
    }

    /// The private IP of the instance's network interface, as the emulator assigned it.
    pub async fn database_interface_ip(&self) -> String {
        let out = aws_sdk_ec2::Client::new(&self.sdk)
            .describe_network_interfaces()
            .filters(Filter::builder().name("vpc-id").values(&self.vpc_id).build())
            .filters(Filter::builder().name("description").values("RDSNetworkInterface").build())
            .send()
            .await
            .unwrap();
        let interfaces = out.network_interfaces();
        assert_eq!(interfaces.len(), 1, "one RDS network interface expected: {interfaces:?}");
        interfaces[0].private_ip_address().unwrap().to_owned()
    }
}

/// Runs one step the way the state machine does: the step reads its input from the whole
/// workflow document and its result is stored under `result_key` (the state's `ResultPath`).
pub async fn run_step<S: Step>(
    settings: &Settings,
    sdk: &SdkConfig,
    document: &mut Value,
    result_key: &str,
) -> Result<Value, StepError>
where
    S::Input: DeserializeOwned,
{
    let step = S::new(sdk, settings)?;
    let input: S::Input = serde_json::from_value(document.clone()).expect("the document holds the step's input");
    let output = serde_json::to_value(step.run(input).await?).unwrap();
    document[result_key] = output.clone();
    Ok(output)
}

/// The provisioning steps in execution order, as (substitution placeholder, result key), read
/// from the definition: Pass states are followed, and a Choice by its first branch (it is the
/// instance's turn, the NLB is active).
pub fn provision_tasks() -> Vec<(String, String)> {
    workflow_tasks("provision")
}

/// The Task states of `statemachine/<workflow>.asl.json` in execution order, as (substitution
/// placeholder, result key).
pub fn workflow_tasks(workflow: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join(format!("statemachine/{workflow}.asl.json"))).unwrap();
    let definition: Value = serde_json::from_str(&text).unwrap();
    let mut tasks = Vec::new();
    let mut name = definition["StartAt"].as_str().unwrap().to_owned();
    loop {
        let state = &definition["States"][&name];
        let next = match state["Type"].as_str().unwrap() {
            // Waiting for the instance's turn is a concern of its own (tests/turn.rs), and service
            // integrations (tagging the instance) run in the local stack's end-to-end tests.
            "Task"
                if state["Resource"] == "${AwaitTurnFunctionArn}"
                    || !state["Resource"].as_str().unwrap().starts_with("${") =>
            {
                state["Next"].as_str()
            }
            "Task" => {
                let placeholder = state["Resource"].as_str().unwrap().trim_start_matches("${").trim_end_matches('}');
                let key = state["ResultPath"].as_str().unwrap().rsplit('.').next().unwrap();
                tasks.push((placeholder.to_owned(), key.to_owned()));
                state["Next"].as_str()
            }
            "Choice" => state["Choices"][0]["Next"].as_str(),
            _ => state["Next"].as_str(),
        };
        match next {
            Some(next) => name = next.to_owned(),
            None => return tasks,
        }
    }
}

/// Runs the workflow's steps in the definition's order, polling the load balancer step until the
/// load balancer is active, and the target health step until the target is healthy, as the state
/// machine's Wait/Choice loops do (the emulator's `initial` lasts a number of answers, not time).
pub async fn provision(network: &Network, settings: &Settings, identifier: &str) -> Result<Value, StepError> {
    let sdk = &network.sdk;
    let mut document = json!({"db_instance_identifier": identifier, "load_balancer_poll": {"count": 0}});
    for (placeholder, key) in provision_tasks() {
        let doc = &mut document;
        match placeholder.as_str() {
            "InspectDatabaseFunctionArn" => run_step::<InspectDatabase>(settings, sdk, doc, &key).await?,
            "PlanZonesFunctionArn" => run_step::<PlanZones>(settings, sdk, doc, &key).await?,
            "TargetGroupFunctionArn" => run_step::<CreateTargetGroup>(settings, sdk, doc, &key).await?,
            "SecurityGroupsFunctionArn" => run_step::<CreateSecurityGroups>(settings, sdk, doc, &key).await?,
            "LoadBalancerFunctionArn" => {
                let mut polls = 0;
                loop {
                    let lb = run_step::<CreateLoadBalancer>(settings, sdk, doc, &key).await?;
                    if lb["state"] == "active" {
                        break lb;
                    }
                    polls += 1;
                    assert!(polls < 5, "load balancer never became active: {lb}");
                }
            }
            "TargetHealthFunctionArn" => {
                let mut polls = 0;
                loop {
                    let health = run_step::<CheckTargetHealth>(settings, sdk, doc, &key).await?;
                    if health["state"] == "healthy" {
                        break health;
                    }
                    polls += 1;
                    assert!(polls < 5, "target never became healthy: {health}");
                }
            }
            "EndpointServiceFunctionArn" => run_step::<CreateEndpointService>(settings, sdk, doc, &key).await?,
            // Once: following the connection to ACTIVE is the TiDB Cloud tests' own business.
            "ConnectTiDBCloudFunctionArn" => run_step::<ConnectTiDBCloud>(settings, sdk, doc, &key).await?,
            other => panic!("no step for {other}"),
        };
    }
    Ok(document)
}

pub fn str_of<'a>(document: &'a Value, pointer: &str) -> &'a str {
    document.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("{pointer} missing in {document}"))
}

/// Everything in the account that carries the stack's tag, by kind, for counting.
pub async fn managed_resources(network: &Network) -> Vec<String> {
    let ec2 = aws_sdk_ec2::Client::new(&network.sdk);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&network.sdk);
    let mut found = Vec::new();
    let managed = Filter::builder().name(format!("tag:{MANAGED_BY_TAG}")).values(STACK).build();
    let groups = ec2.describe_security_groups().filters(managed.clone()).send().await.unwrap();
    found.extend(groups.security_groups().iter().map(|g| format!("sg {}", g.group_id().unwrap())));
    let services = ec2.describe_vpc_endpoint_service_configurations().send().await.unwrap();
    found.extend(
        services
            .service_configurations()
            .iter()
            .filter(|s| s.tags().iter().any(|t| t.key() == Some(MANAGED_BY_TAG)))
            .map(|s| format!("service {}", s.service_id().unwrap())),
    );
    let tgs = elb.describe_target_groups().send().await.unwrap();
    found.extend(tgs.target_groups().iter().map(|t| format!("tg {}", t.target_group_arn().unwrap())));
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    for lb in lbs.load_balancers() {
        found.push(format!("lb {}", lb.load_balancer_arn().unwrap()));
        let listeners =
            elb.describe_listeners().load_balancer_arn(lb.load_balancer_arn().unwrap()).send().await.unwrap();
        found.extend(listeners.listeners().iter().map(|l| format!("listener {}", l.listener_arn().unwrap())));
    }
    let db_group = ec2.describe_security_groups().group_ids(&network.db_security_group_id).send().await.unwrap();
    for permission in db_group.security_groups()[0].ip_permissions() {
        for pair in permission.user_id_group_pairs() {
            found.push(format!(
                "db rule {:?} {:?} from {:?}",
                permission.ip_protocol(),
                permission.from_port(),
                pair.group_id()
            ));
        }
    }
    found.sort();
    found
}

/// Runs the deprovision workflow's steps in the definition's order, as the state machine does:
/// the load balancer step is polled until it reports `done`, and a `TeardownPending` step again
/// (the definition's poll loops), a bounded number of times.
pub async fn deprovision(network: &Network, settings: &Settings, identifier: &str) -> Result<Value, StepError> {
    let sdk = &network.sdk;
    // The turn names the VPC with per-vpc sharing (AwaitTurn, tests/turn.rs).
    let vpc_id = (settings.sharing == Sharing::PerVpc).then_some(&network.vpc_id);
    let mut document = json!({"db_instance_identifier": identifier, "vpc_id": vpc_id});
    let mut removed = json!({});
    for (placeholder, key) in workflow_tasks("deprovision") {
        let mut attempts = 0;
        let removal = loop {
            let doc = &mut document;
            let result = match placeholder.as_str() {
                "RemoveTiDBCloudConnectionFunctionArn" => {
                    run_step::<RemoveTiDBCloudConnection>(settings, sdk, doc, &key).await
                }
                "RemoveEndpointServiceFunctionArn" => run_step::<RemoveEndpointService>(settings, sdk, doc, &key).await,
                "RemoveLoadBalancerFunctionArn" => run_step::<RemoveLoadBalancer>(settings, sdk, doc, &key).await,
                "RemoveTargetGroupFunctionArn" => run_step::<RemoveTargetGroup>(settings, sdk, doc, &key).await,
                "RemoveSecurityGroupsFunctionArn" => run_step::<RemoveSecurityGroups>(settings, sdk, doc, &key).await,
                other => panic!("no step for {other}"),
            };
            attempts += 1;
            match result {
                Ok(removal) if removal["done"] == true => break removal,
                Ok(_) => {}
                Err(error) if error.name() == "TeardownPending" => {}
                Err(error) => return Err(error),
            }
            assert!(attempts < 5, "{placeholder} never finished");
        };
        removed[key] = removal;
    }
    Ok(removed)
}

pub const CLUSTER: &str = "10140100115280519574";
pub const PUBLIC_KEY: &str = "it-public-key";
pub const PRIVATE_KEY: &str = "it-private-key-4f1d9c";

/// The TiDB Cloud double (`tests/tidb_cloud_double/`) of this test process, started on first use; it exits with us (`--watch-pid`).
pub fn tidb_cloud_double() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(start_tidb_cloud_double)
}

/// A TiDB Cloud double of its own, for a test that injects faults (they are global to a double).
pub fn start_tidb_cloud_double() -> String {
    static STARTED: AtomicU64 = AtomicU64::new(0);
    let logs = root().join("target/test-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let name = format!("tidb-cloud-double-{}-{}.log", std::process::id(), STARTED.fetch_add(1, Ordering::Relaxed));
    let log = std::fs::File::create(logs.join(name)).unwrap();
    let mut child = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/tidb_cloud_double/double.py"))
        .args(["--emulator-url", &emulator().endpoint, "--account-id", TIDB_CLOUD_ACCOUNT])
        .args(["--az-ids", &TIDB_CLOUD_AZ_IDS.join(","), "--cluster", CLUSTER])
        .args(["--public-key", PUBLIC_KEY, "--private-key", PRIVATE_KEY])
        .args(["--watch-pid", &std::process::id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start the TiDB Cloud double");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("the double's ready line");
    std::thread::spawn(move || child.wait()); // reaps it when --watch-pid ends it
    format!("http://127.0.0.1:{}", ready["port"])
}

/// The name of the secret holding the TiDB Cloud API key in the tests.
pub const SECRET_NAME: &str = "tidb-cloud-api-key";

/// Stores the TiDB Cloud key pair (with `private_key`) as the stack's secret; returns its ARN.
pub async fn store_api_key(sdk: &SdkConfig, private_key: &str) -> String {
    let secret = json!({"public_key": PUBLIC_KEY, "private_key": private_key});
    let created = aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(SECRET_NAME)
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap();
    created.arn().unwrap().to_owned()
}

/// An interface endpoint to `service_name` created from `consumer`'s own VPC in use1-az1.
pub async fn request_connection(consumer: &SdkConfig, service_name: &str) -> String {
    let ec2 = aws_sdk_ec2::Client::new(consumer);
    let vpc = ec2.create_vpc().cidr_block("10.99.0.0/16").send().await.unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap();
    let subnet = ec2
        .create_subnet()
        .vpc_id(vpc_id)
        .cidr_block("10.99.1.0/24")
        .availability_zone("us-east-1b")
        .send()
        .await
        .unwrap();
    let endpoint = ec2
        .create_vpc_endpoint()
        .vpc_endpoint_type(VpcEndpointType::Interface)
        .service_name(service_name)
        .vpc_id(vpc_id)
        .subnet_ids(subnet.subnet().unwrap().subnet_id().unwrap())
        .send()
        .await
        .unwrap();
    let endpoint = endpoint.vpc_endpoint().unwrap();
    assert_eq!(endpoint.state().map(|s| s.as_str()), Some("pendingAcceptance"));
    endpoint.vpc_endpoint_id().unwrap().to_owned()
}
