//! The agents and activities a statement names, as the statement filters find them.
//!
//! An agent is named by its identifier: `agent:mbox_sha1sum:<hex>` for a mail address (an `mbox`
//! is reduced to the SHA-1 of its `mailto:` IRI, so the filter keeps no address in clear and an
//! agent given either way is the same agent), `agent:openid:<IRI>` or
//! `agent:account:<homePage> <name>`. An activity is `activity:<IRI>`.

use serde_json::Value;
use sha1::{Digest, Sha1};

/// The filter's name for an agent or identified group; `None` for an anonymous group.
pub fn agent_key(agent: &Value) -> Option<String> {
    if let Some(mbox) = agent.get("mbox").and_then(Value::as_str) {
        let digest = Sha1::digest(mbox.as_bytes());
        return Some(format!(
            "agent:mbox_sha1sum:{}",
            nigrani_domain::roster::hex(&digest)
        ));
    }
    if let Some(sha1) = agent.get("mbox_sha1sum").and_then(Value::as_str) {
        return Some(format!("agent:mbox_sha1sum:{}", sha1.to_ascii_lowercase()));
    }
    if let Some(openid) = agent.get("openid").and_then(Value::as_str) {
        return Some(format!("agent:openid:{openid}"));
    }
    let account = agent.get("account")?;
    let home = account.get("homePage").and_then(Value::as_str)?;
    let name = account.get("name").and_then(Value::as_str)?;
    Some(format!("agent:account:{home} {name}"))
}

/// The filter's name for an activity.
pub fn activity_key(id: &str) -> String {
    format!("activity:{id}")
}

/// Every agent and activity the statement names, and whether each is its actor or object
/// (direct) or only related: the authority, the context's instructor, team, agents and groups,
/// group members, the context activities, and all of a sub-statement's.
pub fn statement_refs(statement: &Value) -> Vec<(String, bool)> {
    let mut refs = Vec::new();
    collect(statement, true, &mut refs);
    if let Some(authority) = statement.get("authority") {
        agent_refs(authority, false, &mut refs);
    }
    refs.sort();
    refs.dedup();
    refs
}

fn collect(statement: &Value, direct: bool, refs: &mut Vec<(String, bool)>) {
    agent_refs(&statement["actor"], direct, refs);
    let object = &statement["object"];
    match object.get("objectType").and_then(Value::as_str) {
        Some("Agent" | "Group") => agent_refs(object, direct, refs),
        Some("SubStatement") => collect(object, false, refs),
        Some("StatementRef") => {}
        _ => {
            if let Some(id) = object.get("id").and_then(Value::as_str) {
                refs.push((activity_key(id), direct));
            }
        }
    }
    let Some(context) = statement.get("context") else {
        return;
    };
    for name in ["instructor", "team"] {
        if let Some(agent) = context.get(name) {
            agent_refs(agent, false, refs);
        }
    }
    for (list, inner) in [("contextAgents", "agent"), ("contextGroups", "group")] {
        for entry in context
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(agent) = entry.get(inner) {
                agent_refs(agent, false, refs);
            }
        }
    }
    if let Some(Value::Object(lists)) = context.get("contextActivities") {
        for activities in lists.values() {
            let items = match activities {
                Value::Array(items) => items.iter().collect::<Vec<_>>(),
                one => vec![one],
            };
            for activity in items {
                if let Some(id) = activity.get("id").and_then(Value::as_str) {
                    refs.push((activity_key(id), false));
                }
            }
        }
    }
}

/// An agent or group, and a group's members (related only).
fn agent_refs(agent: &Value, direct: bool, refs: &mut Vec<(String, bool)>) {
    if let Some(key) = agent_key(agent) {
        refs.push((key, direct));
    }
    for member in agent
        .get("member")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(key) = agent_key(member) {
            refs.push((key, false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_address_is_one_agent_whichever_way_it_is_given() {
        let by_mbox = agent_key(&json!({"mbox": "mailto:xapi@adlnet.gov"})).unwrap();
        let by_sha1 = agent_key(&json!({
            "mbox_sha1sum": "CD9B00A5611F94EAA7B1661EDAB976068E364975"}))
        .unwrap();
        assert_eq!(by_mbox, by_sha1);
        assert!(!by_mbox.contains('@'));
        assert_eq!(
            agent_key(&json!({"objectType": "Group", "member": []})),
            None
        );
    }

    #[test]
    fn direct_and_related_names_are_told_apart() {
        let statement = json!({
            "actor": {"mbox": "mailto:a@uet.edu.pk"},
            "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
            "object": {"id": "https://lms.example.pk/course/7"},
            "context": {
                "instructor": {"account": {"homePage": "https://lms.example.pk", "name": "t1"}},
                "contextActivities": {"parent": {"id": "https://lms.example.pk/program"}}
            }
        });
        let refs = statement_refs(&statement);
        assert!(refs.contains(&("activity:https://lms.example.pk/course/7".into(), true)));
        assert!(refs.contains(&("activity:https://lms.example.pk/program".into(), false)));
        assert!(refs.contains(&("agent:account:https://lms.example.pk t1".into(), false)));
        assert_eq!(refs.iter().filter(|(_, direct)| *direct).count(), 2);
    }
}
