//! The firewall summary: which TCP ports must be open, in which direction,
//! for the mode the probes found working. Built from what the probes saw
//! (the passive ports the server actually announced), not from defaults.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From this host to the server.
    Outbound,
    /// From the server to this host.
    Inbound,
}

/// One opening a firewall must allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirewallRule {
    pub direction: Direction,
    pub protocol: &'static str,
    /// The far end: the server for outbound rules, this host for inbound ones.
    pub host: String,
    /// Ports as seen: `21`, `40000-40100` or `40012, 40013`.
    pub ports: String,
    pub why: String,
}

impl FirewallRule {
    pub fn outbound(host: &str, ports: String, why: impl Into<String>) -> FirewallRule {
        FirewallRule { direction: Direction::Outbound, protocol: "tcp", host: host.to_string(), ports, why: why.into() }
    }

    pub fn inbound(host: &str, ports: String, why: impl Into<String>) -> FirewallRule {
        FirewallRule { direction: Direction::Inbound, protocol: "tcp", host: host.to_string(), ports, why: why.into() }
    }
}

impl fmt::Display for FirewallRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (direction, preposition) = match self.direction {
            Direction::Outbound => ("outbound", "to"),
            Direction::Inbound => ("inbound ", "on"),
        };
        write!(f, "{direction} TCP {preposition} {} port(s) {}: {}", self.host, self.ports, self.why)
    }
}

/// Ports as people write them: sorted, duplicates gone, runs of three or
/// more as `a-b`.
pub fn port_list(ports: &[u16]) -> String {
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ports.len() {
        let mut j = i;
        while j + 1 < ports.len() && ports[j + 1] == ports[j] + 1 {
            j += 1;
        }
        if j >= i + 2 {
            parts.push(format!("{}-{}", ports[i], ports[j]));
            i = j + 1;
        } else {
            parts.push(ports[i].to_string());
            i += 1;
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_listed_as_people_write_them() {
        assert_eq!(port_list(&[40013, 40012, 40013]), "40012, 40013");
        assert_eq!(port_list(&[5, 1, 2, 3, 9]), "1-3, 5, 9");
        assert_eq!(port_list(&[]), "");
        let rule = FirewallRule::outbound("ftp.example.org", port_list(&[21]), "control connection");
        assert_eq!(rule.to_string(), "outbound TCP to ftp.example.org port(s) 21: control connection");
    }
}
