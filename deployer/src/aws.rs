//! The EC2 side of a cluster: clients from the standard credential chain, checks before
//! anything is created, every resource created find-or-create by tag (so `up` resumes and
//! never duplicates), instances launched one per host with that host's user-data, and removal
//! by tag in dependency order. `AWS_ENDPOINT_URL` is honoured (tests point it at moto).

use crate::cluster::{TAG_CLUSTER, TAG_EXPIRES, TAG_INDEX, TAG_ROLE};
use crate::errors;
use anyhow::{anyhow, bail, Result};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceStateName, InstanceType, IpPermission,
    IpRange, Placement, PlacementStrategy, ResourceType, SummaryStatus, Tag, TagSpecification, UserIdGroupPair, VolumeType,
};
use aws_sdk_ec2::Client;
use std::time::Duration;

/// Clients and the region they talk to.
pub struct Aws {
    /// EC2.
    pub ec2: Client,
    /// SSM (public parameters: the default AMI).
    pub ssm: aws_sdk_ssm::Client,
    /// Region in use.
    pub region: String,
    /// The loaded configuration (for a client in another region).
    conf: aws_config::SdkConfig,
}

/// Loads credentials and region from the standard chain (env, profile, SSO, instance role),
/// with `--profile`/`--region` on top, and checks credentials exist before any call.
pub async fn connect(profile: Option<&str>, region: Option<&str>) -> Result<Aws> {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http.clone());
    if let Some(p) = profile {
        // An explicit profile wins over credentials in the environment (as with the AWS CLI),
        // and a profile that does not exist is an error rather than a silent fallback.
        loader = loader
            .profile_name(p)
            .credentials_provider(
                aws_config::profile::ProfileFileCredentialsProvider::builder()
                    .configure(&aws_config::provider_config::ProviderConfig::default().with_http_client(http.clone()))
                    .profile_name(p)
                    .build(),
            );
    }
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    let conf = loader.load().await;
    let region = conf
        .region()
        .map(|r| r.to_string())
        .ok_or_else(|| anyhow!("no AWS region: pass --region (e.g. --region us-east-1), or set AWS_REGION or a region in your AWS profile"))?;
    let creds = conf.credentials_provider().ok_or_else(|| anyhow!(errors::no_credentials()))?;
    use aws_sdk_ec2::config::ProvideCredentials;
    if let Err(e) = creds.provide_credentials().await {
        let text = aws_smithy_types::error::display::DisplayErrorContext(&e).to_string();
        if text.contains("expired") || text.contains("Expired") {
            bail!("the AWS credentials have expired: refresh them (`aws sso login`, or new session credentials) and run the command again");
        }
        if let Some(p) = profile {
            bail!("AWS profile {p:?} gave no credentials: is it in ~/.aws/config or ~/.aws/credentials (`aws configure list-profiles`)? For SSO run `aws sso login --profile {p}`");
        }
        bail!("{} ({})", errors::no_credentials(), text.lines().next().unwrap_or(""));
    }
    Ok(Aws { ec2: Client::new(&conf), ssm: aws_sdk_ssm::Client::new(&conf), region, conf })
}

/// What an instance type offers.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    /// `x86_64` or `arm64`.
    pub arch: String,
    /// vCPUs.
    pub vcpus: i32,
}

/// One instance as EC2 reports it.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Instance id.
    pub id: String,
    /// `node` or `monitor`.
    pub role: String,
    /// Index within the role.
    pub index: usize,
    /// State name (`pending`, `running`, …).
    pub state: String,
    /// Private IPv4.
    pub private_ip: Option<String>,
    /// Public IPv4.
    pub public_ip: Option<String>,
    /// Instance type.
    pub instance_type: String,
}

/// A cluster seen through its tags.
#[derive(Debug, Clone)]
pub struct Found {
    /// Cluster name.
    pub name: String,
    /// `cairn:expires`.
    pub expires: Option<String>,
    /// Live instances.
    pub instances: usize,
}

/// The standard tags of a cluster's resource (plus role/index on hosts).
pub fn tags(cluster: &str, expires: &str, name: &str, host: Option<(&str, usize)>) -> Vec<Tag> {
    let mut t = vec![
        Tag::builder().key("Name").value(name).build(),
        Tag::builder().key(TAG_CLUSTER).value(cluster).build(),
        Tag::builder().key(TAG_EXPIRES).value(expires).build(),
    ];
    if let Some((role, index)) = host {
        t.push(Tag::builder().key(TAG_ROLE).value(role).build());
        t.push(Tag::builder().key(TAG_INDEX).value(index.to_string()).build());
    }
    t
}

fn spec(kind: ResourceType, tags: &[Tag]) -> TagSpecification {
    TagSpecification::builder().resource_type(kind).set_tags(Some(tags.to_vec())).build()
}

fn by_cluster(name: &str) -> Filter {
    Filter::builder().name(format!("tag:{TAG_CLUSTER}")).values(name).build()
}

fn tag_of<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

/// Live instance states (everything but terminated).
const LIVE: [&str; 5] = ["pending", "running", "stopping", "stopped", "shutting-down"];

impl Aws {
    fn explain<E: ProvideErrorMetadata + std::error::Error + 'static>(&self, e: &E, doing: &str, subject: &str) -> anyhow::Error {
        anyhow!(errors::explain(e, doing, subject, &self.region))
    }

    /// Refuses a region the account does not know (before anything is created). Asks
    /// us-east-1, which always exists, for the list: an unknown region has no endpoint to ask.
    pub async fn check_region(&self) -> Result<()> {
        let home = Client::from_conf(aws_sdk_ec2::config::Builder::from(&self.conf).region(aws_config::Region::new("us-east-1")).build());
        let out = home.describe_regions().all_regions(true).send().await.map_err(|e| self.explain(&e, "checking the region", ""))?;
        let known: Vec<&str> = out.regions().iter().filter_map(|r| r.region_name()).collect();
        if !known.contains(&self.region.as_str()) {
            bail!("unknown AWS region {:?}: pass one of {} with --region", self.region, known.join(", "));
        }
        Ok(())
    }

    /// Checks an instance type exists here (DescribeInstanceTypes) and returns what it offers.
    pub async fn check_instance_type(&self, t: &str) -> Result<TypeInfo> {
        let out = self
            .ec2
            .describe_instance_types()
            .instance_types(InstanceType::from(t))
            .send()
            .await
            .map_err(|e| self.explain(&e, "checking the instance type", t))?;
        let info = out.instance_types().first().ok_or_else(|| {
            anyhow!(errors::explain_code("InvalidInstanceType", "", "checking the instance type", t, &self.region))
        })?;
        let arch = info
            .processor_info()
            .map(|p| p.supported_architectures())
            .and_then(|a| a.first())
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| "x86_64".into());
        let vcpus = info.v_cpu_info().and_then(|v| v.default_v_cpus()).unwrap_or(0);
        Ok(TypeInfo { arch, vcpus })
    }

    /// The current Ubuntu LTS AMI for `arch` from Canonical's public SSM parameter.
    pub async fn default_ami(&self, arch: &str) -> Result<String> {
        let arch = if arch == "arm64" { "arm64" } else { "amd64" };
        let param = format!("/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id");
        let out = self.ssm.get_parameter().name(&param).send().await.map_err(|e| self.explain(&e, "looking up the default AMI", &param))?;
        out.parameter().and_then(|p| p.value()).map(str::to_string).ok_or_else(|| anyhow!("SSM parameter {param} has no value: pass --ami"))
    }

    /// Checks an AMI exists here; returns its root device name.
    pub async fn check_ami(&self, ami: &str) -> Result<String> {
        let out = self.ec2.describe_images().image_ids(ami).send().await.map_err(|e| self.explain(&e, "checking the AMI", ami))?;
        let img = out
            .images()
            .first()
            .ok_or_else(|| anyhow!(errors::explain_code("InvalidAMIID.NotFound", "", "checking the AMI", ami, &self.region)))?;
        Ok(img.root_device_name().unwrap_or("/dev/sda1").to_string())
    }

    /// The cluster's key pair: imported once (by name), tagged.
    pub async fn ensure_key_pair(&self, key_name: &str, public_openssh: &str, tags: &[Tag]) -> Result<()> {
        let have = self.ec2.describe_key_pairs().filters(Filter::builder().name("key-name").values(key_name).build()).send().await;
        if let Ok(out) = have {
            if !out.key_pairs().is_empty() {
                return Ok(());
            }
        }
        self.ec2
            .import_key_pair()
            .key_name(key_name)
            .public_key_material(aws_smithy_types::Blob::new(public_openssh.as_bytes()))
            .tag_specifications(spec(ResourceType::KeyPair, tags))
            .send()
            .await
            .map_err(|e| self.explain(&e, "importing the SSH key pair", key_name))?;
        Ok(())
    }

    /// The cluster's VPC (found by tag, else created with DNS host names on).
    pub async fn ensure_vpc(&self, cluster: &str, cidr: &str, tags: &[Tag]) -> Result<String> {
        let out = self.ec2.describe_vpcs().filters(by_cluster(cluster)).send().await.map_err(|e| self.explain(&e, "looking for the VPC", cluster))?;
        if let Some(id) = out.vpcs().first().and_then(|v| v.vpc_id()) {
            return Ok(id.to_string());
        }
        let out = self
            .ec2
            .create_vpc()
            .cidr_block(cidr)
            .tag_specifications(spec(ResourceType::Vpc, tags))
            .send()
            .await
            .map_err(|e| self.explain(&e, "creating the VPC", cidr))?;
        let id = out.vpc().and_then(|v| v.vpc_id()).ok_or_else(|| anyhow!("CreateVpc returned no id"))?.to_string();
        self.ec2
            .modify_vpc_attribute()
            .vpc_id(&id)
            .enable_dns_hostnames(AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .map_err(|e| self.explain(&e, "enabling DNS host names in the VPC", &id))?;
        Ok(id)
    }

    /// The cluster's subnet in `vpc`.
    pub async fn ensure_subnet(&self, cluster: &str, vpc: &str, cidr: &str, tags: &[Tag]) -> Result<String> {
        let out = self.ec2.describe_subnets().filters(by_cluster(cluster)).send().await.map_err(|e| self.explain(&e, "looking for the subnet", cluster))?;
        if let Some(id) = out.subnets().first().and_then(|s| s.subnet_id()) {
            return Ok(id.to_string());
        }
        let out = self
            .ec2
            .create_subnet()
            .vpc_id(vpc)
            .cidr_block(cidr)
            .tag_specifications(spec(ResourceType::Subnet, tags))
            .send()
            .await
            .map_err(|e| self.explain(&e, "creating the subnet", cidr))?;
        Ok(out.subnet().and_then(|s| s.subnet_id()).ok_or_else(|| anyhow!("CreateSubnet returned no id"))?.to_string())
    }

    /// The internet gateway, attached to `vpc`.
    pub async fn ensure_internet_gateway(&self, cluster: &str, vpc: &str, tags: &[Tag]) -> Result<String> {
        let out = self
            .ec2
            .describe_internet_gateways()
            .filters(by_cluster(cluster))
            .send()
            .await
            .map_err(|e| self.explain(&e, "looking for the internet gateway", cluster))?;
        let (id, attached) = match out.internet_gateways().first() {
            Some(g) => (g.internet_gateway_id().unwrap_or_default().to_string(), g.attachments().iter().any(|a| a.vpc_id() == Some(vpc))),
            None => {
                let out = self
                    .ec2
                    .create_internet_gateway()
                    .tag_specifications(spec(ResourceType::InternetGateway, tags))
                    .send()
                    .await
                    .map_err(|e| self.explain(&e, "creating the internet gateway", cluster))?;
                let id = out.internet_gateway().and_then(|g| g.internet_gateway_id()).ok_or_else(|| anyhow!("CreateInternetGateway returned no id"))?;
                (id.to_string(), false)
            }
        };
        if !attached {
            self.ec2
                .attach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(|e| self.explain(&e, "attaching the internet gateway", &id))?;
        }
        Ok(id)
    }

    /// A route table with the default route to `igw`, associated with `subnet`.
    pub async fn ensure_route_table(&self, cluster: &str, vpc: &str, subnet: &str, igw: &str, tags: &[Tag]) -> Result<String> {
        let out = self.ec2.describe_route_tables().filters(by_cluster(cluster)).send().await.map_err(|e| self.explain(&e, "looking for the route table", cluster))?;
        let existing = out.route_tables().first().cloned();
        let id = match &existing {
            Some(rt) => rt.route_table_id().unwrap_or_default().to_string(),
            None => {
                let out = self
                    .ec2
                    .create_route_table()
                    .vpc_id(vpc)
                    .tag_specifications(spec(ResourceType::RouteTable, tags))
                    .send()
                    .await
                    .map_err(|e| self.explain(&e, "creating the route table", vpc))?;
                out.route_table().and_then(|r| r.route_table_id()).ok_or_else(|| anyhow!("CreateRouteTable returned no id"))?.to_string()
            }
        };
        let has_route = existing.as_ref().is_some_and(|rt| rt.routes().iter().any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")));
        if !has_route {
            self.ec2
                .create_route()
                .route_table_id(&id)
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(igw)
                .send()
                .await
                .map_err(|e| self.explain(&e, "adding the default route", &id))?;
        }
        let associated = existing.as_ref().is_some_and(|rt| rt.associations().iter().any(|a| a.subnet_id() == Some(subnet)));
        if !associated {
            self.ec2
                .associate_route_table()
                .route_table_id(&id)
                .subnet_id(subnet)
                .send()
                .await
                .map_err(|e| self.explain(&e, "associating the route table", &id))?;
        }
        Ok(id)
    }

    /// The security group: SSH, API/websocket and Grafana from `allowed` only; engine, StatsD
    /// and node-to-node API traffic only from members of the group itself.
    pub async fn ensure_security_group(&self, cluster: &str, vpc: &str, allowed: &[String], tags: &[Tag]) -> Result<String> {
        let out = self
            .ec2
            .describe_security_groups()
            .filters(by_cluster(cluster))
            .send()
            .await
            .map_err(|e| self.explain(&e, "looking for the security group", cluster))?;
        let id = match out.security_groups().first().and_then(|g| g.group_id()) {
            Some(id) => id.to_string(),
            None => {
                let out = self
                    .ec2
                    .create_security_group()
                    .group_name(format!("cairn-{cluster}"))
                    .description(format!("Cairn test cluster {cluster}: operator CIDRs to SSH/API/Grafana, engine and StatsD inside the group"))
                    .vpc_id(vpc)
                    .tag_specifications(spec(ResourceType::SecurityGroup, tags))
                    .send()
                    .await
                    .map_err(|e| self.explain(&e, "creating the security group", cluster))?;
                out.group_id().ok_or_else(|| anyhow!("CreateSecurityGroup returned no id"))?.to_string()
            }
        };
        for rule in ingress_rules(&id, allowed) {
            match self.ec2.authorize_security_group_ingress().group_id(&id).ip_permissions(rule).send().await {
                Ok(_) => {}
                Err(e) if e.code() == Some("InvalidPermission.Duplicate") => {}
                Err(e) => return Err(self.explain(&e, "adding a security group rule", &id)),
            }
        }
        Ok(id)
    }

    /// A cluster placement group named `name` (low latency between nodes).
    pub async fn ensure_placement_group(&self, name: &str, tags: &[Tag]) -> Result<()> {
        let have = self.ec2.describe_placement_groups().filters(Filter::builder().name("group-name").values(name).build()).send().await;
        if have.as_ref().is_ok_and(|o| !o.placement_groups().is_empty()) {
            return Ok(());
        }
        self.ec2
            .create_placement_group()
            .group_name(name)
            .strategy(PlacementStrategy::Cluster)
            .tag_specifications(spec(ResourceType::PlacementGroup, tags))
            .send()
            .await
            .map_err(|e| self.explain(&e, "creating the placement group", name))?;
        Ok(())
    }

    /// Live instances of a cluster, with their role and index tags.
    pub async fn instances(&self, cluster: &str) -> Result<Vec<Instance>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .ec2
                .describe_instances()
                .filters(by_cluster(cluster))
                .filters(Filter::builder().name("instance-state-name").set_values(Some(LIVE.iter().map(|s| s.to_string()).collect())).build())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| self.explain(&e, "listing the cluster's instances", cluster))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let t = i.tags();
                out.push(Instance {
                    id: i.instance_id().unwrap_or_default().to_string(),
                    role: tag_of(t, TAG_ROLE).unwrap_or("node").to_string(),
                    index: tag_of(t, TAG_INDEX).and_then(|x| x.parse().ok()).unwrap_or(usize::MAX),
                    state: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default(),
                    private_ip: i.private_ip_address().map(str::to_string),
                    public_ip: i.public_ip_address().map(str::to_string),
                    instance_type: i.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                });
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.sort_by_key(|i| crate::cluster::host_order(&i.role, i.index));
        Ok(out)
    }

    /// Launches one host, retrying capacity and throttling errors with backoff.
    pub async fn launch(&self, l: &Launch<'_>) -> Result<String> {
        let mut delay = Duration::from_secs(2);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .ec2
                .run_instances()
                .image_id(l.ami)
                .instance_type(InstanceType::from(l.instance_type))
                .key_name(l.key_name)
                .min_count(1)
                .max_count(1)
                .user_data(l.user_data_b64)
                .client_token(l.client_token)
                .network_interfaces(
                    InstanceNetworkInterfaceSpecification::builder()
                        .device_index(0)
                        .subnet_id(l.subnet)
                        .groups(l.security_group)
                        .associate_public_ip_address(l.public_ip)
                        .delete_on_termination(true)
                        .build(),
                )
                .metadata_options(
                    InstanceMetadataOptionsRequest::builder()
                        .http_tokens(HttpTokensState::Required)
                        .http_endpoint(InstanceMetadataEndpointState::Enabled)
                        .build(),
                )
                .block_device_mappings(
                    BlockDeviceMapping::builder()
                        .device_name(l.root_device)
                        .ebs(EbsBlockDevice::builder().volume_size(l.volume_gb).volume_type(VolumeType::Gp3).encrypted(true).delete_on_termination(true).build())
                        .build(),
                )
                .tag_specifications(spec(ResourceType::Instance, l.tags))
                .tag_specifications(spec(ResourceType::Volume, l.tags));
            if let Some(pg) = l.placement_group {
                req = req.placement(Placement::builder().group_name(pg).build());
            }
            match req.send().await {
                Ok(out) => {
                    return out
                        .instances()
                        .first()
                        .and_then(|i| i.instance_id())
                        .map(str::to_string)
                        .ok_or_else(|| anyhow!("RunInstances returned no instance"))
                }
                Err(e) if attempt < 6 && e.code().is_some_and(errors::retryable) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(self.explain(&e, l.doing, l.instance_type)),
            }
        }
    }

    /// Per instance id: running with both status checks passed.
    pub async fn readiness(&self, ids: &[String]) -> Result<Vec<(String, bool)>> {
        let out = self
            .ec2
            .describe_instance_status()
            .set_instance_ids(Some(ids.to_vec()))
            .include_all_instances(true)
            .send()
            .await
            .map_err(|e| self.explain(&e, "checking instance status", ""))?;
        Ok(out
            .instance_statuses()
            .iter()
            .map(|s| {
                let running = s.instance_state().and_then(|st| st.name()) == Some(&InstanceStateName::Running);
                let ok = |x: Option<&aws_sdk_ec2::types::InstanceStatusSummary>| x.and_then(|y| y.status()) == Some(&SummaryStatus::Ok);
                (s.instance_id().unwrap_or_default().to_string(), running && ok(s.instance_status()) && ok(s.system_status()))
            })
            .collect())
    }

    /// The user-data an instance was launched with (base64), to recover a lost host key.
    pub async fn user_data(&self, id: &str) -> Result<Option<String>> {
        let out = self
            .ec2
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .map_err(|e| self.explain(&e, "reading an instance's user-data", id))?;
        Ok(out.user_data().and_then(|u| u.value()).map(str::to_string))
    }

    /// Every cluster in the region, by tag (from VPCs and instances, so a half-built or
    /// half-removed cluster is listed too).
    pub async fn clusters(&self) -> Result<Vec<Found>> {
        let key = Filter::builder().name("tag-key").values(TAG_CLUSTER).build();
        let vpcs = self.ec2.describe_vpcs().filters(key.clone()).send().await.map_err(|e| self.explain(&e, "listing clusters", ""))?;
        let mut found: std::collections::BTreeMap<String, Found> = Default::default();
        for v in vpcs.vpcs() {
            if let Some(n) = tag_of(v.tags(), TAG_CLUSTER) {
                found.entry(n.to_string()).or_insert(Found { name: n.into(), expires: tag_of(v.tags(), TAG_EXPIRES).map(Into::into), instances: 0 });
            }
        }
        let mut token = None;
        loop {
            let page = self
                .ec2
                .describe_instances()
                .filters(key.clone())
                .filters(Filter::builder().name("instance-state-name").set_values(Some(LIVE.iter().map(|s| s.to_string()).collect())).build())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| self.explain(&e, "listing clusters", ""))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                if let Some(n) = tag_of(i.tags(), TAG_CLUSTER) {
                    let f = found.entry(n.to_string()).or_insert(Found { name: n.into(), expires: tag_of(i.tags(), TAG_EXPIRES).map(Into::into), instances: 0 });
                    f.instances += 1;
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(found.into_values().collect())
    }

    /// Everything tagged with the cluster, by kind (what `down` removes and then re-checks).
    pub async fn tagged(&self, cluster: &str) -> Result<Tagged> {
        macro_rules! describe {
            ($call:ident, $what:literal) => {
                self.ec2.$call().filters(by_cluster(cluster)).send().await.map_err(|e| self.explain(&e, concat!("listing ", $what), cluster))?
            };
        }
        let addresses = describe!(describe_addresses, "addresses");
        let volumes = describe!(describe_volumes, "volumes");
        let groups = describe!(describe_security_groups, "security groups");
        let subnets = describe!(describe_subnets, "subnets");
        let tables = describe!(describe_route_tables, "route tables");
        let gateways = describe!(describe_internet_gateways, "internet gateways");
        let vpcs = describe!(describe_vpcs, "VPCs");
        let keys = describe!(describe_key_pairs, "key pairs");
        let ids = |v: Vec<Option<&str>>| v.into_iter().flatten().map(str::to_string).collect::<Vec<_>>();
        Ok(Tagged {
            instances: self.instances(cluster).await?,
            addresses: addresses.addresses().iter().map(|a| (a.allocation_id().unwrap_or_default().to_string(), a.association_id().map(str::to_string))).collect(),
            volumes: ids(volumes.volumes().iter().map(|v| v.volume_id()).collect()),
            security_groups: ids(groups.security_groups().iter().map(|g| g.group_id()).collect()),
            placement_groups: self.placement_groups(cluster).await?,
            subnets: ids(subnets.subnets().iter().map(|x| x.subnet_id()).collect()),
            route_tables: tables
                .route_tables()
                .iter()
                .map(|r| {
                    let assoc = r.associations().iter().filter(|a| !a.main().unwrap_or(false)).filter_map(|a| a.route_table_association_id().map(str::to_string)).collect();
                    (r.route_table_id().unwrap_or_default().to_string(), assoc)
                })
                .collect(),
            internet_gateways: gateways
                .internet_gateways()
                .iter()
                .map(|g| (g.internet_gateway_id().unwrap_or_default().to_string(), g.attachments().iter().filter_map(|a| a.vpc_id().map(str::to_string)).collect()))
                .collect(),
            vpcs: ids(vpcs.vpcs().iter().map(|v| v.vpc_id()).collect()),
            key_pairs: ids(keys.key_pairs().iter().map(|k| k.key_name()).collect()),
        })
    }

    /// Removes everything tagged with the cluster, in dependency order: instances (waiting
    /// until terminated), addresses, volumes, security group, placement group, subnet, route
    /// table, internet gateway, VPC, key pair. Returns what it removed; `report` is told of
    /// each removal as it happens.
    pub async fn remove(&self, cluster: &str, wait: Duration, report: &dyn Fn(&str)) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let mut done = |what: String| {
            report(&format!("removed {what}"));
            removed.push(what);
        };
        let instances = self.instances(cluster).await?;
        if !instances.is_empty() {
            let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
            self.ec2
                .terminate_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
                .await
                .map_err(|e| self.explain(&e, "terminating instances", cluster))?;
            report(&format!("terminating {} instances", ids.len()));
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let left = self.instances(cluster).await?;
                if left.is_empty() {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    let names: Vec<String> = left.iter().map(|i| format!("{} ({})", i.id, i.state)).collect();
                    bail!("instances not terminated after {}s: {}; run `deployer down` again", wait.as_secs(), names.join(", "));
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            ids.iter().for_each(|i| done(format!("instance {i}")));
        }
        let t = self.tagged(cluster).await?;
        for (id, assoc) in &t.addresses {
            if let Some(a) = assoc {
                let _ = self.ec2.disassociate_address().association_id(a).send().await;
            }
            self.ec2.release_address().allocation_id(id).send().await.map_err(|e| self.explain(&e, "releasing an address", id))?;
            done(format!("address {id}"));
        }
        for id in &t.volumes {
            self.ec2.delete_volume().volume_id(id).send().await.map_err(|e| self.explain(&e, "deleting a volume", id))?;
            done(format!("volume {id}"));
        }
        for id in &t.security_groups {
            self.retry_dependency(|| self.ec2.delete_security_group().group_id(id).send(), "deleting the security group", id).await?;
            done(format!("security-group {id}"));
        }
        for n in &t.placement_groups {
            self.ec2.delete_placement_group().group_name(n).send().await.map_err(|e| self.explain(&e, "deleting the placement group", n))?;
            done(format!("placement-group {n}"));
        }
        for id in &t.subnets {
            self.retry_dependency(|| self.ec2.delete_subnet().subnet_id(id).send(), "deleting the subnet", id).await?;
            done(format!("subnet {id}"));
        }
        for (id, assocs) in &t.route_tables {
            for a in assocs {
                let _ = self.ec2.disassociate_route_table().association_id(a).send().await;
            }
            self.ec2.delete_route_table().route_table_id(id).send().await.map_err(|e| self.explain(&e, "deleting the route table", id))?;
            done(format!("route-table {id}"));
        }
        for (id, vpcs) in &t.internet_gateways {
            for vpc in vpcs {
                self.ec2
                    .detach_internet_gateway()
                    .internet_gateway_id(id)
                    .vpc_id(vpc)
                    .send()
                    .await
                    .map_err(|e| self.explain(&e, "detaching the internet gateway", id))?;
            }
            self.ec2.delete_internet_gateway().internet_gateway_id(id).send().await.map_err(|e| self.explain(&e, "deleting the internet gateway", id))?;
            done(format!("internet-gateway {id}"));
        }
        for id in &t.vpcs {
            self.retry_dependency(|| self.ec2.delete_vpc().vpc_id(id).send(), "deleting the VPC", id).await?;
            done(format!("vpc {id}"));
        }
        for n in &t.key_pairs {
            self.ec2.delete_key_pair().key_name(n).send().await.map_err(|e| self.explain(&e, "deleting the key pair", n))?;
            done(format!("key-pair {n}"));
        }
        Ok(removed)
    }

    /// The cluster's placement groups. An endpoint that does not implement the call at all
    /// (moto: HTTP 500 with no error code) is reported as a warning and treated as none, so
    /// `down` still removes everything else; real EC2 always answers it.
    async fn placement_groups(&self, cluster: &str) -> Result<Vec<String>> {
        match self.ec2.describe_placement_groups().filters(by_cluster(cluster)).send().await {
            Ok(o) => Ok(o.placement_groups().iter().filter_map(|g| g.group_name().map(str::to_string)).collect()),
            Err(e) if e.code().is_none() && e.raw_response().is_some_and(|r| r.status().as_u16() >= 500) => {
                eprintln!("warning: this EC2 endpoint does not answer DescribePlacementGroups; placement groups were not checked");
                Ok(vec![])
            }
            Err(e) => Err(self.explain(&e, "listing placement groups", cluster)),
        }
    }

    /// EC2 reports DependencyViolation for a while after instances terminate (network
    /// interfaces linger): retry for up to two minutes.
    async fn retry_dependency<F, Fut, T, E>(&self, call: F, doing: &str, id: &str) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            match call().await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some("DependencyViolation") && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(e) => return Err(self.explain(&e, doing, id)),
            }
        }
    }
}

/// What is tagged with a cluster, by kind.
#[derive(Debug, Default)]
pub struct Tagged {
    /// Live instances.
    pub instances: Vec<Instance>,
    /// (allocation id, association id).
    pub addresses: Vec<(String, Option<String>)>,
    /// Volume ids.
    pub volumes: Vec<String>,
    /// Security group ids.
    pub security_groups: Vec<String>,
    /// Placement group names.
    pub placement_groups: Vec<String>,
    /// Subnet ids.
    pub subnets: Vec<String>,
    /// (route table id, non-main association ids).
    pub route_tables: Vec<(String, Vec<String>)>,
    /// (gateway id, attached VPC ids).
    pub internet_gateways: Vec<(String, Vec<String>)>,
    /// VPC ids.
    pub vpcs: Vec<String>,
    /// Key pair names.
    pub key_pairs: Vec<String>,
}

impl Tagged {
    /// Every resource as a "kind id" line.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.instances.iter().map(|i| format!("instance {} ({})", i.id, i.state)).collect();
        out.extend(self.addresses.iter().map(|(a, _)| format!("address {a}")));
        out.extend(self.volumes.iter().map(|v| format!("volume {v}")));
        out.extend(self.security_groups.iter().map(|g| format!("security-group {g}")));
        out.extend(self.placement_groups.iter().map(|g| format!("placement-group {g}")));
        out.extend(self.subnets.iter().map(|s| format!("subnet {s}")));
        out.extend(self.route_tables.iter().map(|(r, _)| format!("route-table {r}")));
        out.extend(self.internet_gateways.iter().map(|(g, _)| format!("internet-gateway {g}")));
        out.extend(self.vpcs.iter().map(|v| format!("vpc {v}")));
        out.extend(self.key_pairs.iter().map(|k| format!("key-pair {k}")));
        out
    }
}

/// Everything one RunInstances needs.
pub struct Launch<'a> {
    /// For messages: "launching node 3".
    pub doing: &'a str,
    /// AMI id.
    pub ami: &'a str,
    /// Instance type.
    pub instance_type: &'a str,
    /// EC2 key pair name.
    pub key_name: &'a str,
    /// Subnet id.
    pub subnet: &'a str,
    /// Security group id.
    pub security_group: &'a str,
    /// Give the host a public IPv4 address.
    pub public_ip: bool,
    /// Root device name of the AMI.
    pub root_device: &'a str,
    /// Root volume size (GiB).
    pub volume_gb: i32,
    /// Base64 user-data.
    pub user_data_b64: &'a str,
    /// Idempotency token: the same token never launches twice.
    pub client_token: &'a str,
    /// Placement group name.
    pub placement_group: Option<&'a str>,
    /// Tags of the instance and its volumes.
    pub tags: &'a [Tag],
}

/// The ingress rules of a cluster's group (`sg`), least privilege.
pub fn ingress_rules(sg: &str, allowed: &[String]) -> Vec<IpPermission> {
    let from_operator = |port: i32, what: &str| {
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(port)
            .to_port(port)
            .set_ip_ranges(Some(allowed.iter().map(|c| IpRange::builder().cidr_ip(c).description(format!("operator: {what}")).build()).collect()))
            .build()
    };
    let within = |proto: &str, from: i32, to: i32, what: &str| {
        IpPermission::builder()
            .ip_protocol(proto)
            .from_port(from)
            .to_port(to)
            .user_id_group_pairs(UserIdGroupPair::builder().group_id(sg).description(format!("cluster: {what}")).build())
            .build()
    };
    vec![
        from_operator(22, "SSH"),
        from_operator(9984, "Cairn HTTP API"),
        from_operator(9985, "Cairn websocket"),
        from_operator(3000, "Grafana"),
        within("tcp", 22, 22, "SSH"),
        within("tcp", 9984, 9985, "Cairn API and websocket"),
        within("tcp", 4222, 4222, "NATS clients"),
        within("tcp", 6222, 6222, "NATS cluster routes"),
        within("udp", 8125, 8125, "StatsD"),
    ]
}
