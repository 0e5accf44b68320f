//! Who may reach a recording, and how much listening an agent's calls may get (R6, R11): the
//! rules the DPO's tool and the console both apply before any byte is decrypted.
use crate::config::{Access, Person, Role};

/// What a person asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Listen to, or export, one recording (counted against the agent's bounds).
    Listen,
    /// Serve a caller's request (export or erase their recordings): the DPO's task.
    SubjectRequest,
}

/// The decision on one access: the person, or the reason for the refusal (said to the person and
/// written to the access log). `agent` is the agent the recording concerns (as the audit log
/// names it), `listens_done` how many listens of that agent's calls this period already had.
pub fn decide<'a>(
    access: &'a Access,
    person: &str,
    want: Want,
    agent: Option<&str>,
    listens_done: u64,
) -> Result<&'a Person, String> {
    let Some(p) = access.person(person) else {
        return Err(format!("\"{person}\" is not listed in [access] (dpo, coach or agent): nobody else may reach recordings (R11)"));
    };
    if want == Want::SubjectRequest {
        return match p.role {
            Role::Dpo => Ok(p),
            r => Err(format!(
                "{person} is a {}: callers' requests are served by the DPO",
                r.as_str()
            )),
        };
    }
    let own = |a: &str| p.agents.iter().any(|x| x == a);
    match (p.role, agent) {
        (Role::Dpo, _) => {}
        (Role::Coach, Some(a)) if own(a) => {}
        (Role::Agent, Some(a)) if own(a) => return Ok(p), // their own calls: not a listen of someone else's work
        (Role::Coach, Some(a)) => {
            return Err(format!("the recording concerns {a}, who is not in {person}'s team ({}): a coach reaches only their team's calls (R11)", p.agents.join(", ")))
        }
        (Role::Agent, Some(a)) => return Err(format!("the recording concerns {a}: an agent reaches only their own calls (R11)")),
        (_, None) => return Err(format!("the recording names no agent: only the DPO may reach it, and {person} is a {}", p.role.as_str())),
    }
    if let Some(a) = agent {
        if access.max_listens_per_agent > 0 && listens_done >= access.max_listens_per_agent {
            return Err(format!(
                "{a}'s calls were already listened to {listens_done} time(s) this {}: max_listens_per_agent = {} (R6: listening is bounded per agent and period)",
                access.listen_period.as_str(),
                access.max_listens_per_agent
            ));
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::CapPeriod;

    fn access() -> Access {
        let person = |name: &str, role, agents: &[&str]| Person {
            name: name.into(),
            role,
            agents: agents.iter().map(|a| a.to_string()).collect(),
            password_hash: None,
        };
        Access {
            access_log: "/l/access.jsonl".into(),
            listen_period: CapPeriod::Week,
            max_listens_per_agent: 2,
            min_listens_per_agent: 1,
            people: vec![
                person("claire", Role::Dpo, &[]),
                person("marc", Role::Coach, &["PJSIP/anna", "PJSIP/bob"]),
                person("anna", Role::Agent, &["PJSIP/anna"]),
            ],
        }
    }

    #[test]
    fn roles_reach_what_they_own() {
        let a = access();
        assert!(
            decide(&a, "claire", Want::Listen, Some("PJSIP/zoe"), 0).is_ok(),
            "the DPO reaches everything"
        );
        assert!(decide(&a, "claire", Want::Listen, None, 0).is_ok());
        assert!(decide(&a, "marc", Want::Listen, Some("PJSIP/bob"), 0).is_ok());
        let e = decide(&a, "marc", Want::Listen, Some("PJSIP/zoe"), 0).unwrap_err();
        assert!(e.contains("not in marc's team (PJSIP/anna, PJSIP/bob)"), "{e}");
        assert!(
            decide(&a, "anna", Want::Listen, Some("PJSIP/anna"), 99).is_ok(),
            "their own calls, whatever the count"
        );
        assert!(decide(&a, "anna", Want::Listen, Some("PJSIP/bob"), 0)
            .unwrap_err()
            .contains("only their own calls"));
        assert!(decide(&a, "marc", Want::Listen, None, 0).unwrap_err().contains("names no agent"));
        assert!(decide(&a, "eve", Want::Listen, Some("PJSIP/anna"), 0)
            .unwrap_err()
            .contains("not listed in [access]"));
    }

    #[test]
    fn the_listen_past_the_maximum_is_refused_whoever_asks() {
        let a = access();
        assert!(decide(&a, "marc", Want::Listen, Some("PJSIP/anna"), 1).is_ok());
        let e = decide(&a, "marc", Want::Listen, Some("PJSIP/anna"), 2).unwrap_err();
        assert!(
            e.contains("already listened to 2 time(s) this week: max_listens_per_agent = 2 (R6"),
            "{e}"
        );
        assert!(
            decide(&a, "claire", Want::Listen, Some("PJSIP/anna"), 2).is_err(),
            "the DPO's listening is bounded too"
        );
        let unbounded = Access { max_listens_per_agent: 0, ..access() };
        assert!(decide(&unbounded, "marc", Want::Listen, Some("PJSIP/anna"), 1000).is_ok());
    }

    #[test]
    fn callers_requests_are_the_dpos() {
        let a = access();
        assert!(decide(&a, "claire", Want::SubjectRequest, None, 0).is_ok());
        assert!(decide(&a, "marc", Want::SubjectRequest, None, 0)
            .unwrap_err()
            .contains("served by the DPO"));
    }
}
