//! cloud-init user-data for a host: the host key the deployer generated (so the deployer's
//! known_hosts is right before the first connection), no password logins, and a power-off at
//! the cluster's expiry (checked at every boot, so a host started after its TTL stops again).

use crate::keys::SshKeyPair;
use base64::Engine;

/// The `#cloud-config` text for a host with `host_key`, powering off at `expires_unix`.
pub fn render(host_key: &SshKeyPair, expires_unix: i64, expires_rfc3339: &str) -> String {
    let private: String = host_key.private_openssh.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "#cloud-config\n\
         # Written by the Cairn deployer. The host key below is pinned in the deployer's known_hosts.\n\
         ssh_pwauth: false\n\
         ssh_deletekeys: true\n\
         ssh_genkeytypes: []\n\
         ssh_keys:\n  \
           ed25519_private: |\n{private}  \
           ed25519_public: {public}\n\
         bootcmd:\n  \
           - [sh, -c, 'if [ \"$(date +%s)\" -ge {expires_unix} ]; then poweroff; else systemd-run --unit=cairn-ttl --on-calendar=\"@{expires_unix}\" /bin/systemctl poweroff || true; fi']\n\
         # cairn:expires {expires_rfc3339}\n",
        public = crate::keys::key_without_comment(&host_key.public_openssh),
    )
}

/// The user-data as the EC2 API wants it from the Rust SDK: base64 (boto3 encodes for you,
/// the Rust SDK does not).
pub fn encode(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The host's public key from user-data this module wrote (for a host whose record was lost).
pub fn host_key_from(user_data_base64: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(user_data_base64.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.lines().find_map(|l| l.trim().strip_prefix("ed25519_public:").map(|k| k.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_survives_the_round_trip_and_yaml_is_valid() {
        let k = crate::keys::generate("host").unwrap();
        let text = render(&k, 1_900_000_000, "2030-03-17T17:46:40Z");
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(v["ssh_keys"]["ed25519_private"].as_str().unwrap(), k.private_openssh);
        assert_eq!(v["ssh_pwauth"], serde_yaml_ng::Value::Bool(false));
        assert!(v["bootcmd"][0][2].as_str().unwrap().contains("1900000000"));
        assert_eq!(host_key_from(&encode(&text)).unwrap(), crate::keys::key_without_comment(&k.public_openssh));
    }
}
