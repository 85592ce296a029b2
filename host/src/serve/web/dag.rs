//! The DAG drawn as SVG. Laid out on the server once per workflow shape and cached: layers by
//! longest path from left to right, each layer ordered by where its needs sit (one barycentre
//! sweep), a crowded layer wrapped into sub-columns. A page only recolours nodes; nothing is
//! laid out in the browser. Linear in steps + edges (plus one sort per layer).

use crate::dag::{Dag, Node};
use maud::{Markup, PreEscaped, html};
use std::collections::HashMap;
use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

const NODE_W: u32 = 168;
const NODE_H: u32 = 38;
const GAP_X: u32 = 44;
const GAP_Y: u32 = 12;
const MARGIN: u32 = 8;
/// A layer taller than this wraps into sub-columns (a 1000-step fan-out stays on screen).
const MAX_ROWS: usize = 16;
/// Longest step id shown whole in a node.
const MAX_LABEL: usize = 20;
/// Shapes kept: a server serves a handful of workflows, each with few versions at a time.
const CACHE_SIZE: usize = 64;

/// Where each step sits, and the edges between them as SVG paths.
pub(super) struct Layout {
    width: u32,
    height: u32,
    nodes: Vec<(String, u32, u32)>,
    edges: String,
}

/// Layouts by workflow shape (steps and needs).
#[derive(Default)]
pub(crate) struct LayoutCache(Mutex<HashMap<u64, Arc<Layout>>>);

impl LayoutCache {
    /// The layout of `dag`, computed on first use of its shape.
    pub(super) fn get(&self, dag: &Dag) -> Arc<Layout> {
        let key = shape(dag);
        if let Some(hit) = self.lock().get(&key) {
            return hit.clone();
        }
        let layout = Arc::new(layout(dag));
        let mut cache = self.lock();
        if cache.len() >= CACHE_SIZE {
            cache.clear();
        }
        cache.insert(key, layout.clone());
        layout
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Layout>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn shape(dag: &Dag) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for node in 0..dag.len() {
        dag.id(node).hash(&mut h);
        dag.needs(node).hash(&mut h);
    }
    h.finish()
}

fn layout(dag: &Dag) -> Layout {
    let n = dag.len();
    // Layer: one right of its deepest need.
    let mut layer = vec![0usize; n];
    let mut layers: Vec<Vec<Node>> = Vec::new();
    for id in dag.order() {
        let Some(node) = dag.node(id) else { continue };
        let l = dag
            .needs(node)
            .iter()
            .map(|&need| layer[need] + 1)
            .max()
            .unwrap_or(0);
        layer[node] = l;
        if layers.len() <= l {
            layers.resize_with(l + 1, Vec::new);
        }
        layers[l].push(node);
    }
    // Order each layer by the mean row of its needs (declaration order breaks ties).
    let mut row = vec![0f64; n];
    for nodes in &mut layers {
        let key = |node: Node| {
            let needs = dag.needs(node);
            if needs.is_empty() {
                node as f64
            } else {
                needs.iter().map(|&m| row[m]).sum::<f64>() / needs.len() as f64
            }
        };
        let mut keyed: Vec<(f64, Node)> = nodes.iter().map(|&v| (key(v), v)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (i, (_, v)) in keyed.iter().enumerate() {
            row[*v] = i as f64;
        }
        *nodes = keyed.into_iter().map(|(_, v)| v).collect();
    }
    let rows = layers
        .iter()
        .map(|l| l.len().min(MAX_ROWS))
        .max()
        .unwrap_or(0) as u32;
    let height = rows * (NODE_H + GAP_Y) - GAP_Y.min(rows * GAP_Y) + 2 * MARGIN;
    let mut at = vec![(0u32, 0u32); n];
    let mut x = MARGIN;
    for nodes in &layers {
        for column in nodes.chunks(MAX_ROWS) {
            // Centre a short column against the tallest one.
            let offset = (rows - column.len() as u32) * (NODE_H + GAP_Y) / 2;
            for (i, &v) in column.iter().enumerate() {
                at[v] = (x, MARGIN + offset + i as u32 * (NODE_H + GAP_Y));
            }
            x += NODE_W + GAP_X;
        }
    }
    let width = (x + MARGIN).saturating_sub(GAP_X).max(2 * MARGIN);
    let mut edges = String::new();
    for v in 0..n {
        let (x2, y2) = (at[v].0, at[v].1 + NODE_H / 2);
        for &need in dag.needs(v) {
            let (x1, y1) = (at[need].0 + NODE_W, at[need].1 + NODE_H / 2);
            let bend = (x2.saturating_sub(x1)) / 2;
            let _ = write!(
                edges,
                r#"<path d="M{x1} {y1}C{} {y1} {} {y2} {x2} {y2}"/>"#,
                x1 + bend,
                x2.saturating_sub(bend)
            );
        }
    }
    let nodes = dag
        .order()
        .filter_map(|id| dag.node(id))
        .map(|v| (dag.id(v).to_string(), at[v].0, at[v].1))
        .collect();
    Layout {
        width,
        height,
        nodes,
        edges,
    }
}

/// How a step stands in a run, for its node.
#[derive(Clone, Copy)]
pub(super) struct NodeState<'a> {
    pub status: &'a str,
    pub attempts: i64,
    pub ms: Option<i64>,
    /// Shown instead of the status line (the plugin, on a workflow's page).
    pub note: Option<&'a str>,
}

/// The second line of a node: status, attempts beyond the first, duration.
pub(super) fn node_meta(state: &NodeState<'_>) -> String {
    if let Some(note) = state.note {
        return note.to_string();
    }
    let mut meta = state.status.replace('_', " ");
    if state.attempts > 1 {
        let _ = write!(meta, " ×{}", state.attempts);
    }
    if let Some(ms) = state.ms {
        let _ = write!(meta, " · {}", super::page::duration(ms));
    }
    meta
}

/// The SVG of a laid-out DAG, each node coloured by its state (`pending` when it has none)
/// and linking to `href(step)`.
pub(super) fn svg(
    layout: &Layout,
    label: &str,
    states: &HashMap<&str, NodeState<'_>>,
    href: impl Fn(&str) -> String,
) -> Markup {
    let pending = NodeState {
        status: "pending",
        attempts: 0,
        ms: None,
        note: None,
    };
    html! {
        svg.dag xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(label)
            width=(layout.width) height=(layout.height)
            viewBox={ "0 0 " (layout.width) " " (layout.height) } {
            g.edges { (PreEscaped(&layout.edges)) }
            @for (id, x, y) in &layout.nodes {
                @let state = states.get(id.as_str()).unwrap_or(&pending);
                a class={ "node st-" (state.status) } data-step=(id) href=(href(id))
                    transform={ "translate(" (x) " " (y) ")" } {
                    title { (id) ": " (state.status) }
                    rect width=(NODE_W) height=(NODE_H) rx="7" {}
                    text.name x="10" y="16" { (short(id)) }
                    text.meta x="10" y="31" { (node_meta(state)) }
                }
            }
        }
    }
}

/// An id cut to fit a node.
fn short(id: &str) -> String {
    if id.chars().count() <= MAX_LABEL {
        id.to_string()
    } else {
        let head: String = id.chars().take(MAX_LABEL - 1).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dag(steps: &[(&str, &[&str])]) -> Dag {
        Dag::build(steps.iter().map(|(id, needs)| (*id, needs.iter().copied()))).unwrap()
    }

    fn place(layout: &Layout, id: &str) -> (u32, u32) {
        let (_, x, y) = layout.nodes.iter().find(|(n, _, _)| n == id).unwrap();
        (*x, *y)
    }

    #[test]
    fn needs_sit_left_of_what_needs_them_and_edges_join_them() {
        let d = dag(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]);
        let l = layout(&d);
        let (a, b, c, dd) = (
            place(&l, "a"),
            place(&l, "b"),
            place(&l, "c"),
            place(&l, "d"),
        );
        assert!(a.0 < b.0 && b.0 == c.0 && c.0 < dd.0);
        assert_ne!(b.1, c.1, "two steps of one layer do not overlap");
        assert_eq!(l.edges.matches("<path").count(), 4);
        assert!(l.width >= dd.0 + NODE_W && l.height >= b.1.max(c.1) + NODE_H);
    }

    #[test]
    fn a_wide_fan_out_wraps_into_columns_and_the_shape_is_cached() {
        let mut steps: Vec<(String, Vec<&str>)> = vec![("root".into(), vec![])];
        steps.extend((0..1000).map(|i| (format!("s{i}"), vec!["root"])));
        let d = Dag::build(steps.iter().map(|(id, n)| (id.as_str(), n.iter().copied()))).unwrap();
        let cache = LayoutCache::default();
        let l = cache.get(&d);
        assert_eq!(l.nodes.len(), 1001);
        assert!(l.height <= MAX_ROWS as u32 * (NODE_H + GAP_Y) + 2 * MARGIN);
        let columns: std::collections::HashSet<u32> = l.nodes.iter().map(|n| n.1).collect();
        assert_eq!(columns.len(), 1 + 1000usize.div_ceil(MAX_ROWS));
        assert!(Arc::ptr_eq(&l, &cache.get(&d)), "laid out once per shape");
        let mut seen = std::collections::HashSet::new();
        assert!(
            l.nodes.iter().all(|(_, x, y)| seen.insert((*x, *y))),
            "no two nodes overlap"
        );
    }

    #[test]
    fn nodes_carry_their_state_and_escape_their_ids() {
        let d = dag(&[("load", &[]), ("x<y", &["load"])]);
        let l = layout(&d);
        let states = HashMap::from([(
            "load",
            NodeState {
                status: "succeeded",
                attempts: 2,
                ms: Some(1500),
                note: None,
            },
        )]);
        let svg = svg(&l, "dag", &states, |id| format!("?step={id}")).into_string();
        assert!(
            svg.contains(r#"class="node st-succeeded" data-step="load""#),
            "{svg}"
        );
        assert!(svg.contains("succeeded ×2 · 1.5 s"));
        assert!(
            svg.contains(r#"class="node st-pending" data-step="x&lt;y""#),
            "{svg}"
        );
        assert!(!svg.contains("x<y"));
    }
}
