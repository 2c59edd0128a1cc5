//! Bounds on a client's JSON Schema (`response_format`, `guided_json`, a tool's `parameters`),
//! checked when a request is parsed, so by the gateway before enqueue and by the worker before
//! its engine compiles the schema.
//!
//! llguidance (the engine's constrained decoding, and the gateway's own check) compiles a
//! schema by recursion: into every subschema, and through each `$ref` into its target the first
//! time that reference is met. The stack it needs therefore grows with the schema's nesting
//! counted through `$ref`s: a chain of 800 definitions, each only a `$ref` to the next, is 27 KB
//! of JSON and overflowed a 2 MiB thread. [`check_bounds`] bounds that recursion from above,
//! with loops and an explicit graph (no recursion of its own): each reference is a node weighing
//! one level for the hop plus the depth of the deepest `$ref` inside its target; a target is
//! entered once, so the recursion follows a simple path of references, and the heaviest path
//! through the graph's strongly connected components (a cycle counted whole) bounds it, plus
//! the schema's own depth, which [`MAX_SCHEMA_DEPTH`] bounds. A reference the walk cannot
//! resolve in the document itself (a remote one, an anchor, or any reference in a document with
//! `$id`s, which move the base of relative references) could lead anywhere: then every
//! reference counts as deep as the whole document, so the bound never undercounts.

use crate::nesting::{value_depth, MAX_DEPTH};
use petgraph::algo::kosaraju_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// The most levels a schema may nest (as any client JSON, [`MAX_DEPTH`]; a `guided_json` given
/// as text is parsed apart from the body, so it is measured here).
pub const MAX_SCHEMA_DEPTH: usize = MAX_DEPTH;

/// The most nesting a schema may reach counted through its `$ref`s (see the module's text).
/// Real schemas stay far below it (a Pydantic model of 50 classes nested 5 deep counts about
/// 30); the compilers' stacks have room for several times more.
pub const MAX_REF_NESTING: usize = 256;

/// The most JSON values (objects, arrays, scalars) in one schema, so a schema's compile time
/// stays bounded on the gateway's and the worker's threads.
pub const MAX_SCHEMA_VALUES: usize = 50_000;

/// Keywords whose string value refers to another schema.
const REF_KEYWORDS: [&str; 3] = ["$ref", "$dynamicRef", "$recursiveRef"];

/// `Ok` when `schema` is within every bound above; else the client-facing reason, naming the
/// bound and its limit.
pub fn check_bounds(schema: &Value) -> Result<(), String> {
    let depth = value_depth(schema);
    if depth > MAX_SCHEMA_DEPTH {
        return Err(format!(
            "the schema nests {depth} levels deep; the limit is {MAX_SCHEMA_DEPTH}"
        ));
    }
    let too_many = || format!("the schema has more than {MAX_SCHEMA_VALUES} JSON values");
    let root = Walk::of(schema).ok_or_else(too_many)?;
    let nesting = match RefGraph::build(schema, &root) {
        Some(graph) => graph.heaviest_path(),
        // Some reference could lead anywhere: each may cost the whole document's depth.
        None => root.deepest_ref + root.refs.len() * (1 + depth),
    };
    if let Some(cycle) = alias_cycle(schema, &root) {
        return Err(format!(
            "the schema's `$ref`s form a cycle that matches no value: {}",
            cycle.join(" -> ")
        ));
    }
    if nesting > MAX_REF_NESTING {
        return Err(format!(
            "the schema's `$ref`s nest too deep: followed, they can reach {nesting} levels; \
             the limit is {MAX_REF_NESTING} (a chain of definitions that each refer to the \
             next counts two levels per link)"
        ));
    }
    Ok(())
}

/// Keys that do not constrain a value: an object with only these and a `$ref` is an alias of
/// its target.
const NOT_CONSTRAINTS: [&str; 10] = [
    "$ref",
    "$defs",
    "definitions",
    "$schema",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
];

/// A chain of aliases (objects that are only a `$ref`) that comes back on itself, as the
/// references met along it: such a schema matches nothing, so the engine's constraint would
/// allow no first token (llguidance's grammar comes out empty and the engine fails). Cycles
/// through `properties` or `items` (a tree) are fine and not reported. Followed with a loop,
/// each alias once.
fn alias_cycle(schema: &Value, root: &Walk) -> Option<Vec<String>> {
    fn alias(v: &Value) -> Option<&str> {
        let o = v.as_object()?;
        let r = o.get("$ref")?.as_str()?;
        o.keys()
            .all(|k| NOT_CONSTRAINTS.contains(&k.as_str()))
            .then_some(r)
    }
    let resolve = |r: &str| schema.pointer(r.strip_prefix('#')?);
    // 1: on the chain being followed; 2: followed before, no cycle from it.
    let mut state: HashMap<*const Value, u8> = HashMap::new();
    let starts = std::iter::once((schema, "#"))
        .chain(root.refs.iter().filter_map(|r| Some((resolve(r)?, *r))));
    for (start, start_name) in starts {
        // Each alias on the chain, by the reference that led to it.
        let (mut at, mut name) = (start, start_name);
        let mut chain: Vec<(*const Value, &str)> = Vec::new();
        while let Some(r) = alias(at) {
            let key = at as *const Value;
            match state.get(&key) {
                Some(2) => break,
                Some(_) => {
                    let first = chain.iter().position(|(p, _)| *p == key).unwrap_or(0);
                    let mut names: Vec<String> =
                        chain[first..].iter().map(|(_, n)| n.to_string()).collect();
                    names.push(chain[first].1.to_string());
                    return Some(names);
                }
                None => {}
            }
            state.insert(key, 1);
            chain.push((key, name));
            name = r;
            match resolve(r) {
                Some(next) => at = next,
                None => break,
            }
        }
        for v in state.values_mut() {
            *v = 2;
        }
    }
    None
}

/// The references of a schema as a graph: node 0 the root, one node per distinct reference,
/// an edge from each node to every reference inside what it compiles.
struct RefGraph {
    graph: DiGraph<usize, ()>,
}

impl RefGraph {
    /// `None` when a reference cannot be resolved in the document (see the module's text).
    fn build(schema: &Value, root: &Walk) -> Option<RefGraph> {
        if root.has_ids {
            return None;
        }
        let mut graph = DiGraph::new();
        let mut nodes: HashMap<&str, NodeIndex> = HashMap::new();
        // One walk per target, however many references spell it.
        let mut walks: HashMap<*const Value, Walk> = HashMap::new();
        let start = graph.add_node(root.deepest_ref);
        let mut todo = vec![(start, root.refs.clone())];
        while let Some((from, refs)) = todo.pop() {
            for r in refs {
                let to = match nodes.get(r) {
                    Some(&n) => n,
                    None => {
                        let target = schema.pointer(r.strip_prefix('#')?)?;
                        let walk = match walks.entry(target as *const Value) {
                            std::collections::hash_map::Entry::Occupied(w) => w.into_mut(),
                            std::collections::hash_map::Entry::Vacant(e) => {
                                e.insert(Walk::of(target)?)
                            }
                        };
                        let n = graph.add_node(1 + walk.deepest_ref);
                        nodes.insert(r, n);
                        todo.push((n, walk.refs.clone()));
                        n
                    }
                };
                graph.add_edge(from, to, ());
            }
        }
        Some(RefGraph { graph })
    }

    /// The heaviest path from the root, each strongly connected component counted whole.
    fn heaviest_path(&self) -> usize {
        let g = &self.graph;
        // Components in postorder: every component a component reaches comes before it.
        let components = kosaraju_scc(g);
        let mut component_of = vec![0; g.node_count()];
        for (c, members) in components.iter().enumerate() {
            for n in members {
                component_of[n.index()] = c;
            }
        }
        let mut heaviest = vec![0usize; components.len()];
        for (c, members) in components.iter().enumerate() {
            let own: usize = members.iter().map(|&n| g[n]).sum();
            let onward = members
                .iter()
                .flat_map(|&n| g.neighbors(n))
                .map(|m| component_of[m.index()])
                .filter(|&d| d != c)
                .map(|d| heaviest[d])
                .max()
                .unwrap_or(0);
            heaviest[c] = own + onward;
        }
        heaviest[component_of[0]]
    }
}

/// What one walk over a (sub)schema found.
struct Walk<'a> {
    /// The depth of the deepest object holding a reference keyword (the walk's root object is
    /// 1); 0 without references.
    deepest_ref: usize,
    /// Every distinct reference, in the order met.
    refs: Vec<&'a str>,
    /// Some object has a string `$id` (or draft-4 `id`) beside schema keywords.
    has_ids: bool,
}

impl<'a> Walk<'a> {
    /// Walk `root` with an explicit stack; `None` past [`MAX_SCHEMA_VALUES`] values.
    fn of(root: &'a Value) -> Option<Walk<'a>> {
        let mut walk = Walk {
            deepest_ref: 0,
            refs: Vec::new(),
            has_ids: false,
        };
        let mut seen = HashSet::new();
        let mut stack = vec![(root, 0usize)];
        let mut values = 0usize;
        while let Some((v, above)) = stack.pop() {
            values += 1;
            if values > MAX_SCHEMA_VALUES {
                return None;
            }
            match v {
                Value::Array(a) => stack.extend(a.iter().map(|c| (c, above + 1))),
                Value::Object(o) => {
                    walk.look_at(o, above + 1, &mut seen);
                    stack.extend(o.values().map(|c| (c, above + 1)));
                }
                _ => {}
            }
        }
        Some(walk)
    }

    fn look_at(&mut self, o: &'a Map<String, Value>, depth: usize, seen: &mut HashSet<&'a str>) {
        for key in REF_KEYWORDS {
            if let Some(r) = o.get(key).and_then(Value::as_str) {
                self.deepest_ref = self.deepest_ref.max(depth);
                if seen.insert(r) {
                    self.refs.push(r);
                }
            }
        }
        // An `id` that is a property's name is an object, not a string: only strings count.
        self.has_ids |= ["$id", "id"]
            .iter()
            .any(|k| o.get(*k).is_some_and(Value::is_string));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// `{"$defs": {"a0": {"$ref": "#/$defs/a1"}, ..., "aN": {"type": "string"}}, "$ref":
    /// "#/$defs/a0"}`: the chain that overflowed the gateway at 800 links.
    pub(crate) fn ref_chain(links: usize) -> Value {
        let mut defs = Map::new();
        for i in 0..links {
            defs.insert(
                format!("a{i}"),
                json!({"$ref": format!("#/$defs/a{}", i + 1)}),
            );
        }
        defs.insert(format!("a{links}"), json!({"type": "string"}));
        json!({"$defs": defs, "$ref": "#/$defs/a0"})
    }

    #[test]
    fn real_schemas_pass() {
        let tree = json!({"$defs": {"node": {"type": "object", "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
            "$ref": "#/$defs/node"});
        assert_eq!(check_bounds(&tree), Ok(()));
        let person = json!({"type": "object", "properties": {"name": {"type": "string"},
            "id": {"type": "integer"}}, "required": ["name"]});
        assert_eq!(
            check_bounds(&person),
            Ok(()),
            "a property named `id` is no `$id`"
        );
        assert_eq!(check_bounds(&ref_chain(60)), Ok(()));
    }

    #[test]
    fn long_chains_wide_and_deep_schemas_are_refused_by_name() {
        let e = check_bounds(&ref_chain(800)).unwrap_err();
        assert!(
            e.contains("`$ref`s nest too deep") && e.contains("256"),
            "{e}"
        );
        // The chain of N links counts 2N + 4: the root's deepest `$ref` sits 3 deep, each
        // link is a hop and a `$ref` 1 deep, and the last target is one hop.
        assert!(check_bounds(&ref_chain(126)).is_ok());
        assert!(check_bounds(&ref_chain(127))
            .unwrap_err()
            .contains("258 levels"));
        let mut deep = json!({"type": "string"});
        for _ in 0..40 {
            deep = json!({"type": "object", "properties": {"a": deep}});
        }
        assert!(check_bounds(&deep).unwrap_err().contains("nests 81 levels"));
        let wide: Vec<Value> = (0..MAX_SCHEMA_VALUES).map(|i| json!(i)).collect();
        let e = check_bounds(&json!({"enum": wide})).unwrap_err();
        assert!(e.contains("50000 JSON values"), "{e}");
    }

    #[test]
    fn cycles_count_whole_and_shared_targets_once() {
        // a -> b -> a: each a hop and a `$ref` 3 deep, counted together; the root's deepest
        // `$ref` (inside `$defs`) sits 5 deep.
        let s = json!({"$defs": {
            "a": {"type": "object", "properties": {"b": {"$ref": "#/$defs/b"}}},
            "b": {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}}},
            "$ref": "#/$defs/a"});
        assert_eq!(check_bounds(&s), Ok(()));
        let g = RefGraph::build(&s, &Walk::of(&s).unwrap()).unwrap();
        assert_eq!(g.heaviest_path(), 5 + 4 + 4);
        // Many references to one target are one node each, but the target is walked once.
        let props: Map<String, Value> = (0..1000)
            .map(|i| (format!("p{i}"), json!({"$ref": "#/$defs/a"})))
            .collect();
        let s = json!({"$defs": {"a": {"type": "string"}}, "properties": props});
        assert_eq!(check_bounds(&s), Ok(()));
    }

    #[test]
    fn alias_cycles_match_nothing_and_are_named() {
        let cycle = |s: Value| check_bounds(&s).unwrap_err();
        let e = cycle(json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}));
        assert!(e.ends_with("#/$defs/a -> #/$defs/a"), "{e}");
        let e = cycle(json!({"$defs": {"a": {"$ref": "#/$defs/b", "title": "A"},
            "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}));
        assert!(e.contains("#/$defs/a -> #/$defs/b -> #/$defs/a"), "{e}");
        assert!(cycle(json!({"$ref": "#"})).ends_with(": # -> #"));
        // Only a cycle inside a property: still nothing matches it where it is used.
        let e = cycle(
            json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/a"}},
            "$defs": {"a": {"$ref": "#/$defs/a"}}}),
        );
        assert!(e.contains("cycle"), "{e}");
        // Recursion through structure, or beside an alternative, matches values.
        let anyof = json!({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "string"}]}},
            "$ref": "#/$defs/a"});
        assert_eq!(check_bounds(&anyof), Ok(()));
        let chain = json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"type": "string"}},
            "$ref": "#/$defs/a", "$comment": "an alias chain that ends"});
        assert_eq!(check_bounds(&chain), Ok(()));
    }

    #[test]
    fn references_the_walk_cannot_follow_count_as_deep_as_the_document() {
        // With `$id`s a `#/...` may resolve elsewhere: each reference counts the whole depth.
        let mut s = ref_chain(70);
        assert!(check_bounds(&s).is_ok());
        s["$id"] = json!("https://example.com/s");
        assert!(check_bounds(&s).is_err());
        // Anchors and remote references too.
        let refs: Map<String, Value> = (0..100)
            .map(|i| (format!("p{i}"), json!({"$ref": format!("other.json#/{i}")})))
            .collect();
        let s = json!({"type": "object", "properties": {"x": {"type": "object",
            "properties": refs}}});
        assert!(check_bounds(&s).is_err());
    }
}
