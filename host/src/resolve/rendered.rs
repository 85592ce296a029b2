//! A rendered `with` as an instance `jsonschema` checks where it lies: the parts it borrows
//! from the scope (100 000 rows read from another step) are read in place, not copied into one
//! `serde_json::Value` first (the copy cost Kafka's `produce` 24 ms of its 33 ms check).

use crate::workflow::expr::Rendered;
use jsonschema::json::{Array, Json, Node, NodeIdentity, Object, SerdeJson};
use jsonschema::types::JsonType;
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// The representation: a [`Rendered`] tree whose leaves are JSON values.
pub(crate) struct RenderedJson;

/// One node: a part the template built, or a JSON value (a literal, or what a name read).
#[derive(Clone, Copy)]
pub(crate) enum RenderedNode<'a> {
    Array(&'a [Rendered<'a>]),
    Object(&'a [(&'a str, Rendered<'a>)]),
    Value(&'a Value),
}

impl<'a> RenderedNode<'a> {
    pub(crate) fn of(rendered: &'a Rendered<'a>) -> Self {
        match rendered {
            Rendered::Value(value) => RenderedNode::Value(value),
            Rendered::Array(items) => RenderedNode::Array(items),
            Rendered::Object(fields) => RenderedNode::Object(fields),
        }
    }
}

impl Json for RenderedJson {
    type Node<'a> = RenderedNode<'a>;
    type PreparedKey = String;
    type StringBuffer = ();
    // As `SerdeJson`'s: the values' objects are `BTreeMap`s, and the template's are short.
    const KEYS_PER_LOOKUP: usize = 2;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>((): &mut (), string: &str, f: impl FnOnce(RenderedNode<'_>) -> T) -> T {
        SerdeJson::with_string_node(&mut (), string, |node| f(RenderedNode::Value(node)))
    }
}

impl<'a> Node<'a, RenderedJson> for RenderedNode<'a> {
    type Object = RenderedObject<'a>;
    type Array = RenderedArray<'a>;
    type Number = &'a Number;

    fn as_object(&self) -> Option<RenderedObject<'a>> {
        match *self {
            RenderedNode::Object(fields) => Some(RenderedObject::Fields(fields)),
            RenderedNode::Value(Value::Object(map)) => Some(RenderedObject::Map(map)),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<RenderedArray<'a>> {
        match *self {
            RenderedNode::Array(items) => Some(RenderedArray::Items(items)),
            RenderedNode::Value(Value::Array(values)) => Some(RenderedArray::Values(values)),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        self.value().and_then(|v| Node::<SerdeJson>::as_string(&v))
    }

    fn as_number(&self) -> Option<&'a Number> {
        self.value().and_then(|v| Node::<SerdeJson>::as_number(&v))
    }

    fn as_boolean(&self) -> Option<bool> {
        self.value().and_then(Value::as_bool)
    }

    fn is_null(&self) -> bool {
        self.value().is_some_and(Value::is_null)
    }

    fn json_type(&self) -> JsonType {
        match self {
            RenderedNode::Array(_) => JsonType::Array,
            RenderedNode::Object(_) => JsonType::Object,
            RenderedNode::Value(v) => Node::<SerdeJson>::json_type(v),
        }
    }

    fn string_length(&self) -> Option<u64> {
        self.value()
            .and_then(|v| Node::<SerdeJson>::string_length(&v))
    }

    fn string_length_within(&self, min: u64, max: u64) -> Option<bool> {
        self.value()
            .and_then(|v| Node::<SerdeJson>::string_length_within(&v, min, max))
    }

    fn equals_value(&self, expected: &Value) -> bool {
        match self {
            RenderedNode::Value(v) => Node::<SerdeJson>::equals_value(v, expected),
            _ => jsonschema::json::cmp::equal(&self.to_value(), expected),
        }
    }

    /// Errors and `const`/`enum`/`uniqueItems` only: a part the template built is copied.
    fn to_value(&self) -> Cow<'a, Value> {
        match *self {
            RenderedNode::Value(v) => Cow::Borrowed(v),
            RenderedNode::Array(items) => {
                Cow::Owned(Value::Array(items.iter().map(Rendered::to_value).collect()))
            }
            RenderedNode::Object(fields) => Cow::Owned(Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            )),
        }
    }

    /// A part the template built is tagged apart from the values: a built object and the
    /// first value inside it may share an address.
    fn identity(&self) -> Option<NodeIdentity> {
        let (address, tag) = match *self {
            RenderedNode::Value(v) => (std::ptr::from_ref(v) as usize, 0),
            RenderedNode::Array(items) => (items.as_ptr() as usize, 1),
            RenderedNode::Object(fields) => (fields.as_ptr() as usize, 2),
        };
        Some(NodeIdentity::tagged(address, tag))
    }
}

impl<'a> RenderedNode<'a> {
    /// The JSON value, when this node is one.
    fn value(&self) -> Option<&'a Value> {
        match *self {
            RenderedNode::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// An object the template built (keys in order), or one a value holds.
pub(crate) enum RenderedObject<'a> {
    Fields(&'a [(&'a str, Rendered<'a>)]),
    Map(&'a Map<String, Value>),
}

impl<'a> Object<'a, RenderedJson> for RenderedObject<'a> {
    type Node = RenderedNode<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        match self {
            RenderedObject::Fields(fields) => fields.len(),
            RenderedObject::Map(map) => map.len(),
        }
    }

    fn get(&self, key: &String) -> Option<RenderedNode<'a>> {
        match *self {
            RenderedObject::Fields(fields) => fields
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, v)| RenderedNode::of(v)),
            RenderedObject::Map(map) => map.get(key).map(RenderedNode::Value),
        }
    }

    fn members(&self) -> Members<'a> {
        match *self {
            RenderedObject::Fields(fields) => Members::Fields(fields.iter()),
            RenderedObject::Map(map) => Members::Map(map.iter()),
        }
    }
}

/// The members of a [`RenderedObject`], in order.
pub(crate) enum Members<'a> {
    Fields(std::slice::Iter<'a, (&'a str, Rendered<'a>)>),
    Map(serde_json::map::Iter<'a>),
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, RenderedNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Members::Fields(fields) => fields.next().map(|(k, v)| (*k, RenderedNode::of(v))),
            Members::Map(map) => map
                .next()
                .map(|(k, v)| (k.as_str(), RenderedNode::Value(v))),
        }
    }
}

/// An array the template built, or one a value holds.
pub(crate) enum RenderedArray<'a> {
    Items(&'a [Rendered<'a>]),
    Values(&'a [Value]),
}

impl<'a> Array<'a, RenderedJson> for RenderedArray<'a> {
    type Node = RenderedNode<'a>;
    type ElementsIter = Elements<'a>;

    fn len(&self) -> usize {
        match self {
            RenderedArray::Items(items) => items.len(),
            RenderedArray::Values(values) => values.len(),
        }
    }

    fn elements(&self) -> Elements<'a> {
        match *self {
            RenderedArray::Items(items) => Elements::Items(items.iter()),
            RenderedArray::Values(values) => Elements::Values(values.iter()),
        }
    }

    fn is_unique(&self) -> bool {
        match self {
            RenderedArray::Values(values) => jsonschema::json::unique::is_unique(values),
            RenderedArray::Items(items) => {
                let values: Vec<Value> = items.iter().map(Rendered::to_value).collect();
                jsonschema::json::unique::is_unique(&values)
            }
        }
    }
}

/// The elements of a [`RenderedArray`], in order.
pub(crate) enum Elements<'a> {
    Items(std::slice::Iter<'a, Rendered<'a>>),
    Values(std::slice::Iter<'a, Value>),
}

impl<'a> Iterator for Elements<'a> {
    type Item = RenderedNode<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Elements::Items(items) => items.next().map(RenderedNode::of),
            Elements::Values(values) => values.next().map(RenderedNode::Value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::expr::{Scope, Template};
    use serde_json::json;

    /// Every problem, as `check_config` words it: where, then what.
    fn problems<'i, F: Json>(
        validator: &'i jsonschema::Validator<F>,
        instance: F::Node<'i>,
    ) -> Vec<String> {
        validator
            .iter_errors(instance)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    #[test]
    fn a_rendered_config_is_judged_as_its_copy_would_be() {
        let scope = Scope {
            inputs: json!({
                "rows": [{"id": 1, "name": "a"}, {"id": "two", "name": "b"}, {"id": 3, "extra": true}],
                "tags": ["x", "x"],
                "n": 4,
            })
            .into(),
            ..Scope::default()
        };
        let schema = json!({
            "type": "object",
            "required": ["action", "rows"],
            "additionalProperties": false,
            "properties": {
                "action": {"enum": ["load", "plan"]},
                "rows": {"type": "array", "items": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": false,
                    "properties": {"id": {"type": "integer"}, "name": {"type": "string", "maxLength": 1}},
                }},
                "tags": {"type": "array", "uniqueItems": true},
                "built": {"const": [1, {"k": "v"}]},
                "pair": {"type": "array", "uniqueItems": true},
                "n": {"oneOf": [{"type": "integer", "minimum": 5}, {"type": "string"}]},
            },
        });
        let by_copy = jsonschema::validator_for(&schema).unwrap();
        let in_place = jsonschema::options_for::<RenderedJson>()
            .build(&schema)
            .unwrap();
        // Borrowed rows with a wrong type, a missing key and an unknown one; borrowed
        // duplicates; a built `const` that holds; a built pair that repeats; a number that
        // matches no branch.
        let first = json!({"action": "load", "rows": "${{ inputs.rows }}", "tags": "${{ inputs.tags }}",
            "built": [1, {"k": "v"}], "pair": ["${{ inputs.n }}", 4], "n": "${{ inputs.n }}"});
        let cases = [
            first.clone(),
            // An unknown key, a wrong enum and a built array that is not the `const`.
            json!({"action": "drop", "rows": [], "built": [2], "nope": 1}),
            json!({"action": "plan", "rows": ["${{ inputs.rows[0] }}"], "n": "n=${{ inputs.n }}"}),
        ];
        let mut failing = 0;
        for case in cases {
            let template = Template::parse(&case).unwrap();
            let rendered = template.render_shared(&scope).unwrap();
            let copy = rendered.to_value();
            let expected = problems(&by_copy, &copy);
            let found = problems(&in_place, RenderedNode::of(&rendered));
            assert_eq!(found, expected, "{case}");
            assert_eq!(
                in_place.is_valid(RenderedNode::of(&rendered)),
                by_copy.is_valid(&copy)
            );
            failing += usize::from(!expected.is_empty());
        }
        // The first two fail, each in several ways; the third holds.
        assert_eq!(failing, 2);
        let first = Template::parse(&first).unwrap();
        let rendered = first.render_shared(&scope).unwrap();
        let found = problems(&in_place, RenderedNode::of(&rendered)).join("\n");
        for expected in [
            "/rows/1/id: \"two\" is not of type \"integer\"",
            "/rows/2: \"name\" is a required property",
            "/tags: [\"x\",\"x\"] has non-unique elements",
            "/pair: [4,4] has non-unique elements",
        ] {
            assert!(found.contains(expected), "{expected} in:\n{found}");
        }
    }
}
