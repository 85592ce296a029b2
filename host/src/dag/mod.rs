//! The DAG of a workflow's steps: topological order, the cycle path, ancestry, and the
//! ready-count walk the executor drives. Pure graph code over step indices, built once per
//! workflow; validation maps a [`Cycle`] to a diagnostic, the executor walks with [`Walk`].
//! Every algorithm here is linear in steps + edges (a 100 000-step chain builds in tens of ms).

mod walk;

pub use walk::Walk;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// Index of a step in declaration order.
pub type Node = usize;

/// A graph of steps and their `needs`, checked to be acyclic.
#[derive(Debug, Clone, Default)]
pub struct Dag {
    ids: Vec<String>,
    index: HashMap<String, Node>,
    /// Distinct needs of each step, in the order written.
    needs: Vec<Vec<Node>>,
    dependents: Vec<Vec<Node>>,
    /// Topological order; ties broken by declaration order.
    order: Vec<Node>,
    /// Position of each step in `order`.
    position: Vec<usize>,
}

/// `needs` that loop: the steps in the order they need each other, the first repeated last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub path: Vec<String>,
    /// The step whose need closes the loop, and that need's position in its `needs` list.
    pub closing: (String, usize),
}

impl Dag {
    /// Build from steps in declaration order with their needs. Unknown needs are ignored (the
    /// validator reports them) and a repeated need counts once.
    pub fn build<'a, I, N>(steps: I) -> Result<Self, Cycle>
    where
        I: IntoIterator<Item = (&'a str, N)>,
        N: IntoIterator<Item = &'a str>,
    {
        let steps: Vec<(&str, Vec<&str>)> = steps
            .into_iter()
            .map(|(id, needs)| (id, needs.into_iter().collect()))
            .collect();
        let index: HashMap<String, Node> = steps
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (id.to_string(), i))
            .collect();
        let mut needs = vec![Vec::new(); steps.len()];
        let mut dependents = vec![Vec::new(); steps.len()];
        for (node, (_, written)) in steps.iter().enumerate() {
            for need in written.iter().filter_map(|n| index.get(*n).copied()) {
                if !needs[node].contains(&need) {
                    needs[node].push(need);
                    dependents[need].push(node);
                }
            }
        }
        let mut dag = Dag {
            ids: steps.iter().map(|(id, _)| id.to_string()).collect(),
            index,
            needs,
            dependents,
            order: Vec::with_capacity(steps.len()),
            position: vec![usize::MAX; steps.len()],
        };
        dag.sort(&steps)?;
        Ok(dag)
    }

    /// Kahn's algorithm with a min-heap of ready steps, so ties go by declaration order.
    fn sort(&mut self, written: &[(&str, Vec<&str>)]) -> Result<(), Cycle> {
        let mut left: Vec<usize> = self.needs.iter().map(Vec::len).collect();
        let mut ready: BinaryHeap<Reverse<Node>> = (0..self.len())
            .filter(|&n| left[n] == 0)
            .map(Reverse)
            .collect();
        while let Some(Reverse(node)) = ready.pop() {
            self.position[node] = self.order.len();
            self.order.push(node);
            for &dependant in &self.dependents[node] {
                left[dependant] -= 1;
                if left[dependant] == 0 {
                    ready.push(Reverse(dependant));
                }
            }
        }
        if self.order.len() == self.len() {
            return Ok(());
        }
        Err(self.cycle(&left, written))
    }

    /// Every step not ordered is on or behind a cycle: from the first of them, follow the first
    /// unordered need until a step repeats.
    fn cycle(&self, left: &[usize], written: &[(&str, Vec<&str>)]) -> Cycle {
        let unordered = |n: Node| left[n] > 0;
        let start = (0..self.len()).find(|&n| unordered(n)).unwrap_or(0);
        let mut seen_at: HashMap<Node, usize> = HashMap::from([(start, 0)]);
        let mut path = vec![start];
        loop {
            let last = *path.last().unwrap_or(&start);
            // The written position of the need, for the caller's span.
            let Some((at, next)) = written[last]
                .1
                .iter()
                .enumerate()
                .filter_map(|(at, n)| self.index.get(*n).map(|&n| (at, n)))
                .find(|&(_, n)| unordered(n))
            else {
                // Unreachable for a real cycle; report what was walked.
                break Cycle {
                    path: path.iter().map(|&n| self.ids[n].clone()).collect(),
                    closing: (self.ids[last].clone(), 0),
                };
            };
            if let Some(&from) = seen_at.get(&next) {
                let mut ids: Vec<String> =
                    path[from..].iter().map(|&n| self.ids[n].clone()).collect();
                ids.push(self.ids[next].clone());
                break Cycle {
                    path: ids,
                    closing: (self.ids[last].clone(), at),
                };
            }
            seen_at.insert(next, path.len());
            path.push(next);
        }
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// No steps at all.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Step ids in topological order (needs first, ties in declaration order).
    pub fn order(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.order.iter().map(|&n| self.ids[n].as_str())
    }

    /// The index of step `id`.
    pub fn node(&self, id: &str) -> Option<Node> {
        self.index.get(id).copied()
    }

    /// The id of a step.
    pub fn id(&self, node: Node) -> &str {
        &self.ids[node]
    }

    /// The distinct needs of a step.
    pub fn needs(&self, node: Node) -> &[Node] {
        &self.needs[node]
    }

    /// The steps that need `node`.
    pub fn dependents(&self, node: Node) -> &[Node] {
        &self.dependents[node]
    }

    /// Does `step` (transitively) need `ancestor`? A depth-first search over needs that never
    /// enters a step ordered before `ancestor`: nothing there can lead to it.
    pub fn is_ancestor(&self, ancestor: &str, step: &str) -> bool {
        let (Some(a), Some(s)) = (self.node(ancestor), self.node(step)) else {
            return false;
        };
        let floor = self.position[a];
        if floor >= self.position[s] {
            return false;
        }
        // A set, not a bitmap over every step: most walks end after a step or two, and a
        // per-query bitmap would make a reference check O(steps).
        let mut seen: HashSet<Node> = HashSet::new();
        let mut stack = vec![s];
        while let Some(n) = stack.pop() {
            for &need in &self.needs[n] {
                if need == a {
                    return true;
                }
                if self.position[need] > floor && seen.insert(need) {
                    stack.push(need);
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dag(steps: &[(&'static str, &[&'static str])]) -> Result<Dag, Cycle> {
        Dag::build(steps.iter().map(|(id, needs)| (*id, needs.iter().copied())))
    }

    const DIAMOND: &[(&str, &[&str])] =
        &[("a", &[]), ("d", &["b", "c"]), ("b", &["a"]), ("c", &["a"])];

    #[test]
    fn orders_needs_first_and_ties_by_declaration() {
        let d = dag(DIAMOND).unwrap();
        assert_eq!(d.order().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        let d = dag(&[("z", &[]), ("y", &[]), ("x", &["z"])]).unwrap();
        assert_eq!(d.order().collect::<Vec<_>>(), ["z", "y", "x"]);
    }

    #[test]
    fn reports_the_cycle_path_and_the_need_that_closes_it() {
        let c = dag(&[
            ("extract", &["load"]),
            ("transform", &["extract"]),
            ("load", &["transform"]),
        ])
        .unwrap_err();
        assert_eq!(c.path, ["extract", "load", "transform", "extract"]);
        assert_eq!(c.closing, ("transform".to_string(), 0));
        let c = dag(&[("a", &["a"])]).unwrap_err();
        assert_eq!(c.path, ["a", "a"]);
    }

    #[test]
    fn a_step_behind_a_cycle_is_not_part_of_the_path() {
        let c = dag(&[("behind", &["x"]), ("x", &["y"]), ("y", &["x"])]).unwrap_err();
        assert_eq!(c.path, ["x", "y", "x"]);
    }

    #[test]
    fn ancestry_follows_needs_transitively_and_only_upwards() {
        let d = dag(DIAMOND).unwrap();
        assert!(d.is_ancestor("a", "d"));
        assert!(d.is_ancestor("b", "d"));
        assert!(!d.is_ancestor("b", "c"));
        assert!(!d.is_ancestor("d", "a"));
        assert!(!d.is_ancestor("a", "a"));
        assert!(!d.is_ancestor("nope", "a"));
    }

    #[test]
    fn unknown_and_repeated_needs_do_not_count() {
        let d = dag(&[("a", &[]), ("b", &["a", "a", "ghost"])]).unwrap();
        assert_eq!(d.needs(d.node("b").unwrap()), [0]);
    }

    #[test]
    fn a_long_chain_orders_without_recursion() {
        let ids: Vec<String> = (0..100_000).map(|i| format!("s{i}")).collect();
        let d = Dag::build(ids.iter().enumerate().map(|(i, id)| {
            (
                id.as_str(),
                if i == 0 {
                    None
                } else {
                    Some(ids[i - 1].as_str())
                },
            )
        }))
        .unwrap();
        assert_eq!(d.order().last(), Some("s99999"));
        assert!(d.is_ancestor("s99998", "s99999"));
    }
}
