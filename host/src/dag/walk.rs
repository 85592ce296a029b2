//! The ready-count walk: which steps can be decided as others finish, in O(steps + edges) for
//! a whole run.

use super::{Dag, Node};

/// One run's progress over a [`Dag`]: how many unfinished needs each step still waits for.
pub struct Walk<'d> {
    dag: &'d Dag,
    waiting: Vec<usize>,
    /// Steps whose needs have all finished, next one last.
    decidable: Vec<Node>,
}

impl<'d> Walk<'d> {
    /// Start a walk in which the steps for which `done` holds have already finished (a resumed
    /// run); the first decidable steps come in topological order.
    pub fn start(dag: &'d Dag, done: impl Fn(Node) -> bool) -> Self {
        let waiting: Vec<usize> = (0..dag.len())
            .map(|n| dag.needs(n).iter().filter(|&&m| !done(m)).count())
            .collect();
        let decidable = dag
            .order
            .iter()
            .rev()
            .copied()
            .filter(|&n| !done(n) && waiting[n] == 0)
            .collect();
        Walk {
            dag,
            waiting,
            decidable,
        }
    }

    /// The next step whose needs have all finished, to run or to mark upstream-failed.
    pub fn next_decidable(&mut self) -> Option<Node> {
        self.decidable.pop()
    }

    /// `node` reached its final state: its dependants wait for one step less.
    pub fn finished(&mut self, node: Node) {
        for &dependant in self.dag.dependents(node) {
            let left = &mut self.waiting[dependant];
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.decidable.push(dependant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_a_step_when_its_last_need_finishes() {
        let dag = Dag::build([("a", vec![]), ("b", vec![]), ("c", vec!["a", "b"])]).unwrap();
        let mut walk = Walk::start(&dag, |_| false);
        assert_eq!(walk.next_decidable(), Some(0));
        assert_eq!(walk.next_decidable(), Some(1));
        assert_eq!(walk.next_decidable(), None);
        walk.finished(0);
        assert_eq!(walk.next_decidable(), None);
        walk.finished(1);
        assert_eq!(walk.next_decidable(), Some(2));
    }

    #[test]
    fn a_resumed_walk_starts_after_the_finished_steps() {
        let dag = Dag::build([("a", vec![]), ("b", vec!["a"]), ("c", vec!["b"])]).unwrap();
        let mut walk = Walk::start(&dag, |n| n == 0);
        assert_eq!(walk.next_decidable(), Some(1));
        assert_eq!(walk.next_decidable(), None);
    }
}
