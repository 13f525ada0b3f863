//! Where each node of a YAML document sits in its file, so that errors found
//! after deserialization (a dangling reference, a bad duration) can still be
//! reported as `PATH:LINE:COL`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step into a YAML document: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root, printed as `routes[2].match.path`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodePath(pub Vec<Seg>);

impl NodePath {
    pub fn root() -> Self {
        NodePath(Vec::new())
    }
    pub fn key(&self, k: impl Into<String>) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.into()));
        NodePath(v)
    }
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        NodePath(v)
    }
    pub fn parent(&self) -> Option<Self> {
        if self.0.is_empty() {
            None
        } else {
            Some(NodePath(self.0[..self.0.len() - 1].to_vec()))
        }
    }
}

impl std::fmt::Display for NodePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(root)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Line and column, both 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Positions of every value (and every mapping key) in a document.
#[derive(Default, Debug)]
pub struct PositionIndex {
    values: HashMap<NodePath, Pos>,
    keys: HashMap<NodePath, Pos>,
}

impl PositionIndex {
    /// Index `text`; a document that does not parse gives an empty index
    /// (serde_yaml reports the syntax error itself, with its position).
    pub fn build(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return PositionIndex::default();
        }
        builder.index
    }

    /// Where the key of `path` is written, else where its value is, else
    /// the nearest ancestor that is known.
    pub fn locate(&self, path: &NodePath) -> Pos {
        let mut p = Some(path.clone());
        while let Some(cur) = p {
            if let Some(pos) = self.keys.get(&cur).or_else(|| self.values.get(&cur)) {
                return *pos;
            }
            p = cur.parent();
        }
        Pos { line: 1, col: 1 }
    }

    /// Where the value of `path` is written (falls back like [`locate`]).
    pub fn locate_value(&self, path: &NodePath) -> Pos {
        match self.values.get(path) {
            Some(pos) => *pos,
            None => self.locate(path),
        }
    }
}

enum Frame {
    Map {
        path: NodePath,
        pending_key: Option<String>,
    },
    Seq {
        path: NodePath,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    index: PositionIndex,
}

impl Builder {
    /// The path of the node that starts now, or `None` when the node is a
    /// mapping key (whose position is recorded separately).
    fn next_value_path(&mut self, key_text: Option<&str>, pos: Pos) -> Option<NodePath> {
        match self.stack.last_mut() {
            None => Some(NodePath::root()),
            Some(Frame::Seq { path, next }) => {
                let p = path.index(*next);
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, pending_key }) => match pending_key.take() {
                Some(k) => Some(path.key(k)),
                None => {
                    // This node is a key. Complex keys are not used by our schema.
                    let k = key_text.unwrap_or("?").to_string();
                    self.index.keys.insert(path.key(k.clone()), pos);
                    *pending_key = Some(k);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos {
            line: mark.line(),
            col: mark.col() + 1,
        };
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(p) = self.next_value_path(Some(&text), pos) {
                    self.index.values.insert(p, pos);
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.next_value_path(Some("*alias"), pos) {
                    self.index.values.insert(p, pos);
                }
            }
            Event::MappingStart(..) => {
                let p = self.next_value_path(None, pos).unwrap_or_default();
                self.index.values.insert(p.clone(), pos);
                self.stack.push(Frame::Map {
                    path: p,
                    pending_key: None,
                });
            }
            Event::SequenceStart(..) => {
                let p = self.next_value_path(None, pos).unwrap_or_default();
                self.index.values.insert(p.clone(), pos);
                self.stack.push(Frame::Seq { path: p, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let text = "a:\n  b: 1\nroutes:\n  - name: x\n    match: { path: /y }\n";
        let idx = PositionIndex::build(text);
        let root = NodePath::root();
        assert_eq!(idx.locate(&root.key("a").key("b")), Pos { line: 2, col: 3 });
        let m = root.key("routes").index(0).key("match").key("path");
        assert_eq!(idx.locate(&m), Pos { line: 5, col: 14 });
        assert_eq!(m.to_string(), "routes[0].match.path");
        // unknown paths fall back to the nearest known ancestor
        let missing = root.key("routes").index(0).key("nope");
        assert_eq!(idx.locate(&missing).line, 4);
    }
}
