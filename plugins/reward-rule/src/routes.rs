//! Which rule scores which data source: an ordered list of prefix or regex routes.

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The three answer formats of the recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Docqa,
    Docmath,
    Choice,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Docqa => "docqa",
            Rule::Docmath => "docmath",
            Rule::Choice => "choice",
        }
    }
}

/// One route: a data source matching `prefix` (case-insensitive) or the regex `pattern` goes to
/// `rule`; `lenient` overrides the reward's `lenient` for these sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    pub rule: Rule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lenient: Option<bool>,
}

impl RouteConfig {
    fn prefix(prefix: &str, rule: Rule) -> Self {
        RouteConfig { prefix: Some(prefix.to_string()), pattern: None, rule, lenient: None }
    }
}

/// What a route decides for a data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub rule: Rule,
    /// The route's own `lenient`, when it sets one.
    pub lenient: Option<bool>,
}

/// The recipe's sources (DocQA-RL-1.6K, the evaluation benchmarks) and the embedded default's
/// synthetic ones.
pub fn default_routes() -> Vec<RouteConfig> {
    let docqa = [
        "multihoprag",
        "musique",
        "hotpotqa",
        "2wikimqa",
        "narrativeqa",
        "qasper",
        "frames",
        "synth_lookup",
        "synth_multihop",
        // The data layer's `data.default_data_source` for rows that name none.
        "docqa",
    ];
    let mut routes: Vec<RouteConfig> = docqa.iter().map(|p| RouteConfig::prefix(p, Rule::Docqa)).collect();
    routes.push(RouteConfig::prefix("docmath", Rule::Docmath));
    routes.push(RouteConfig::prefix("synth_numeric", Rule::Docmath));
    routes.push(RouteConfig::prefix("long_toc_choices", Rule::Choice));
    // longrl's synthetic choice questions ask for the doc-QA format ("Therefore, the answer is
    // (B)"), which only the lenient letter patterns read; no official code covers them.
    routes.push(RouteConfig { lenient: Some(true), ..RouteConfig::prefix("synth_choice", Rule::Choice) });
    routes
}

enum Matcher {
    Prefix(String),
    Pattern(Regex),
}

pub struct Router {
    routes: Vec<(Matcher, Route)>,
}

impl Router {
    /// Compile the routes; errors name the route (`routes[3]`) and what is wrong with it.
    pub fn new(configs: &[RouteConfig]) -> Result<Self, (String, String)> {
        let mut routes = Vec::new();
        for (i, route) in configs.iter().enumerate() {
            let key = format!("routes[{i}]");
            let matcher = match (&route.prefix, &route.pattern) {
                (Some(prefix), None) if !prefix.is_empty() => Matcher::Prefix(prefix.to_lowercase()),
                (None, Some(pattern)) => {
                    Matcher::Pattern(Regex::new(pattern).map_err(|e| (key.clone(), format!("bad pattern: {e}")))?)
                }
                (Some(_), Some(_)) => {
                    return Err((key, "give `prefix` or `pattern`, not both".into()));
                }
                _ => return Err((key, "needs a non-empty `prefix` or a `pattern`".into())),
            };
            routes.push((matcher, Route { rule: route.rule, lenient: route.lenient }));
        }
        Ok(Router { routes })
    }

    /// The first route that matches.
    pub fn route(&self, data_source: &str) -> Option<Route> {
        let lower = data_source.to_lowercase();
        self.routes
            .iter()
            .find(|(matcher, _)| match matcher {
                Matcher::Prefix(prefix) => lower.starts_with(prefix.as_str()),
                Matcher::Pattern(re) => re.is_match(data_source),
            })
            .map(|(_, route)| *route)
    }

    /// The rule of the first route that matches.
    pub fn rule(&self, data_source: &str) -> Option<Rule> {
        self.route(data_source).map(|route| route.rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_route_the_recipe_sources() {
        let router = Router::new(&default_routes()).unwrap();
        assert_eq!(router.rule("musique_v1"), Some(Rule::Docqa));
        assert_eq!(router.rule("MultiHopRAG_v1"), Some(Rule::Docqa));
        assert_eq!(router.rule("docmath_v1"), Some(Rule::Docmath));
        assert_eq!(router.rule("long_toc_choices_0_20000"), Some(Rule::Choice));
        assert_eq!(router.rule("synth_numeric"), Some(Rule::Docmath));
        assert_eq!(router.rule("gsm8k"), None);
        assert_eq!(router.route("synth_choice").unwrap().lenient, Some(true));
        assert_eq!(router.route("long_toc_choices_0_20000").unwrap().lenient, None);
    }

    #[test]
    fn patterns_and_bad_routes() {
        let routes = vec![
            RouteConfig { prefix: None, pattern: Some("^my_(qa|rag)$".into()), rule: Rule::Docqa, lenient: None },
            RouteConfig::prefix("my", Rule::Choice),
        ];
        let router = Router::new(&routes).unwrap();
        assert_eq!(router.rule("my_rag"), Some(Rule::Docqa));
        assert_eq!(router.rule("my_rag2"), Some(Rule::Choice));
        let bad = RouteConfig { prefix: None, pattern: Some("(".into()), rule: Rule::Docqa, lenient: None };
        assert_eq!(Router::new(&[bad]).err().unwrap().0, "routes[0]");
        let both =
            RouteConfig { prefix: Some("a".into()), pattern: Some("b".into()), rule: Rule::Docqa, lenient: None };
        assert!(Router::new(&[both]).err().unwrap().1.contains("not both"));
        let neither = RouteConfig { prefix: None, pattern: None, rule: Rule::Docqa, lenient: None };
        assert!(Router::new(&[neither]).is_err());
    }
}
