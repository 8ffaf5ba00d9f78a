//! Turns AWS errors into one line that says what was wrong and what to do. The SDK's own
//! errors name a code and a message; users need the fix (which flag, which permission, which
//! quota), and nothing else on the screen.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_smithy_types::error::display::DisplayErrorContext;

/// Error codes worth retrying with backoff: capacity and throttling.
pub fn retryable(code: &str) -> bool {
    matches!(code, "InsufficientInstanceCapacity" | "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "ServiceUnavailable" | "Unavailable")
}

/// One line for a failed call. `doing` names the step ("launching node 3"), `subject` what
/// it was about (an instance type, an AMI), `region` where.
pub fn explain<E>(e: &E, doing: &str, subject: &str, region: &str) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = e.message().unwrap_or("").to_string();
    match e.code() {
        Some(c) => explain_code(c, &detail, doing, subject, region),
        None => {
            let text = format!("{}", DisplayErrorContext(e));
            if text.contains("credentials") || text.contains("Credentials") {
                no_credentials()
            } else if text.contains("dns error") || text.contains("failed to lookup") || text.contains("Connection refused") || text.contains("connect") {
                format!("{doing}: could not reach the EC2 endpoint for region {region} ({}); check the region name, the network, and AWS_ENDPOINT_URL if set", first_line(&text))
            } else {
                format!("{doing}: {}", first_line(&text))
            }
        }
    }
}

/// The message for an AWS error code; public so the messages for codes a test endpoint cannot
/// produce (expired tokens, quotas) are checked too.
pub fn explain_code(code: &str, detail: &str, doing: &str, subject: &str, region: &str) -> String {
    match code {
        "AuthFailure" | "InvalidClientTokenId" | "UnrecognizedClientException" | "SignatureDoesNotMatch" | "IncompleteSignature" => format!(
            "{doing}: AWS rejected the credentials ({code}); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --profile, or run `aws sso login`"
        ),
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" | "TokenRefreshRequired" => format!(
            "{doing}: the AWS credentials have expired ({code}); refresh them (`aws sso login`, or new session credentials) and run the command again"
        ),
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => format!(
            "{doing}: permission denied ({code}); the IAM identity needs the actions listed in deployer/iam-policy.json{}",
            if detail.is_empty() { String::new() } else { format!(" ({})", first_line(detail)) }
        ),
        "VcpuLimitExceeded" | "InstanceLimitExceeded" | "MaxSpotInstanceCountExceeded" => format!(
            "{doing}: the account's vCPU quota in {region} is too small for this cluster ({code}); ask for more under Service Quotas \
             ('Running On-Demand Standard instances'), or use fewer nodes or a smaller --instance-type; `deployer up` resumes where it stopped"
        ),
        "InsufficientInstanceCapacity" => format!(
            "{doing}: AWS has no capacity for {subject} in {region} right now, even after retries ({code}); try another --instance-type \
             or --region, or run `deployer up` again later (it resumes)"
        ),
        "InvalidAMIID.NotFound" | "InvalidAMIID.Malformed" | "InvalidAMIID.Unavailable" => format!(
            "{doing}: AMI {subject} does not exist in {region} ({code}); pass an AMI id of that region with --ami, or leave --ami out for current Ubuntu LTS"
        ),
        "InvalidInstanceType" => format!(
            "{doing}: instance type {subject} is not offered in {region} ({code}); pick another --instance-type (`aws ec2 describe-instance-types`)"
        ),
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => format!(
            "{doing}: AWS is throttling this account's requests ({code}), still after retries; wait a minute and run again (`deployer up` resumes)"
        ),
        "VpcLimitExceeded" | "InternetGatewayLimitExceeded" | "SecurityGroupLimitExceeded" | "AddressLimitExceeded" => format!(
            "{doing}: an account quota in {region} is used up ({code}); remove clusters you no longer need (`deployer list`, `deployer reap`) or ask for more under Service Quotas"
        ),
        "ParameterNotFound" => format!(
            "{doing}: the public SSM parameter {subject} does not exist in {region} ({code}); pass an AMI id with --ami"
        ),
        "OptInRequired" => format!("{doing}: the account is not subscribed to this service or region ({code}); enable region {region} for the account"),
        _ => format!("{doing}: {code}: {}", if detail.is_empty() { "(no message)" } else { first_line(detail) }),
    }
}

/// The message when no credentials could be found anywhere in the chain.
pub fn no_credentials() -> String {
    "no AWS credentials found: set AWS_PROFILE (or pass --profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
     or run `aws sso login`; on EC2 an instance role works too"
        .to_string()
}

/// The first line, at most 240 characters (SDK errors can carry a whole response dump).
fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or(s);
    match line.char_indices().nth(240) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes the test endpoint (moto) cannot produce: each still gets its own actionable line.
    #[test]
    fn every_bad_input_code_says_what_to_do() {
        let cases = [
            ("ExpiredToken", "aws sso login"),
            ("RequestExpired", "have expired"),
            ("AuthFailure", "rejected the credentials"),
            ("UnauthorizedOperation", "deployer/iam-policy.json"),
            ("VcpuLimitExceeded", "Service Quotas"),
            ("InsufficientInstanceCapacity", "another --instance-type"),
            ("InvalidAMIID.NotFound", "--ami"),
            ("InvalidInstanceType", "another --instance-type"),
            ("RequestLimitExceeded", "wait a minute"),
            ("VpcLimitExceeded", "deployer reap"),
        ];
        for (code, want) in cases {
            let m = explain_code(code, "", "launching node 0", "c6i.xlarge", "us-east-1");
            assert!(m.contains(want) && m.contains(code) && m.starts_with("launching node 0"), "{code}: {m}");
            assert_eq!(m.lines().count(), 1, "{m}");
        }
        assert!(retryable("InsufficientInstanceCapacity") && !retryable("InvalidAMIID.NotFound"));
    }
}
