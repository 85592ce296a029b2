//! The order services start in: each after everything it depends on.

use std::collections::BTreeMap;

/// Order services so that each comes after everything it depends on; a cycle is an error
/// that shows it (`a -> b -> a`). Ties are broken by name, so the order is stable.
pub fn toposort(graph: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, Vec<String>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        order: &mut Vec<String>,
    ) -> Result<(), String> {
        match marks.get(node) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle: Vec<&str> = stack[start..].to_vec();
                cycle.push(node);
                return Err(format!("depends_on cycle: {}", cycle.join(" -> ")));
            }
            None => {}
        }
        let Some(deps) = graph.get(node) else {
            return Ok(());
        };
        marks.insert(node, Mark::Visiting);
        stack.push(node);
        for dep in deps {
            visit(dep, graph, marks, stack, order)?;
        }
        stack.pop();
        marks.insert(node, Mark::Done);
        order.push(node.to_string());
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut stack = Vec::new();
    let mut order = Vec::new();
    for node in graph.keys() {
        visit(node, graph, &mut marks, &mut stack, &mut order)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn orders_services_after_their_dependencies_and_shows_a_cycle() {
        let order = toposort(&graph(&[
            ("web", &["db", "init"]),
            ("init", &["db"]),
            ("db", &[]),
        ]))
        .unwrap();
        assert_eq!(order, vec!["db", "init", "web"]);
        let err = toposort(&graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])])).unwrap_err();
        assert_eq!(err, "depends_on cycle: a -> b -> c -> a");
        let err = toposort(&graph(&[("a", &["a"])])).unwrap_err();
        assert_eq!(err, "depends_on cycle: a -> a");
    }
}
