//! One filter pattern compiled into a nondeterministic automaton that is run
//! with a bitset of live states: one step per segment of the event type.
//!
//! Broker layer, pure. State `i` means "the first `i` pattern segments have
//! matched". For an input segment `s`, a live state `i` moves to `i + 1` when
//! segment `i` is `*` or the literal `s`, and stays when it is `#` (which
//! consumes `s`). A live `#` state also makes `i + 1` live without consuming
//! anything (zero segments). `>` is compiled as `*.#` (one or more), and runs
//! of `#` collapse into one (`#.#` means the same as `#`), so one closure step
//! suffices. The type matches when the last state is live at the end.
//!
//! Cost per input segment: one hash lookup plus a few word operations per 64
//! states, so matching is linear in the type's length for any pattern.

use std::collections::HashMap;

use super::Segment;

/// A fixed-width set of states.
type Bits = Vec<u64>;

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Automaton {
    /// Number of states: compiled segments + 1.
    states: usize,
    /// For each literal: the states whose segment it is.
    literals: HashMap<String, Bits>,
    /// States whose segment is `*`.
    one: Bits,
    /// States whose segment is `#`.
    any: Bits,
    /// Live states before any input: state 0 and its closure.
    start: Bits,
}

/// What a pattern segment compiles to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step<'a> {
    Literal(&'a str),
    One,
    Any,
}

impl Automaton {
    /// Compiles a parsed pattern.
    pub(super) fn new(segments: &[Segment]) -> Automaton {
        let mut steps: Vec<Step<'_>> = Vec::with_capacity(segments.len() + 1);
        for segment in segments {
            let expanded: &[Step<'_>] = match segment {
                Segment::Literal(lit) => &[Step::Literal(lit.as_str())],
                Segment::One => &[Step::One],
                Segment::Any => &[Step::Any],
                Segment::Rest => &[Step::One, Step::Any],
            };
            for &step in expanded {
                // `#.#` is `#`: keeping one makes a single closure step exact.
                if !(step == Step::Any && steps.last() == Some(&Step::Any)) {
                    steps.push(step);
                }
            }
        }
        let states = steps.len() + 1;
        let words = states.div_ceil(64);
        let mut a = Automaton {
            states,
            literals: HashMap::new(),
            one: vec![0; words],
            any: vec![0; words],
            start: vec![0; words],
        };
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Literal(lit) => {
                    let bits = a
                        .literals
                        .entry((*lit).to_string())
                        .or_insert_with(|| vec![0; words]);
                    set(bits, i);
                }
                Step::One => set(&mut a.one, i),
                Step::Any => set(&mut a.any, i),
            }
        }
        let mut start = vec![0; words];
        set(&mut start, 0);
        a.close(&mut start);
        a.start = start;
        a
    }

    /// Adds to `live` the states reachable through a `#` matching zero
    /// segments.
    fn close(&self, live: &mut Bits) {
        let mut carry = 0;
        for (w, any) in live.iter_mut().zip(&self.any) {
            let skip = *w & any;
            let next = (skip << 1) | carry;
            carry = skip >> 63;
            *w |= next;
        }
    }

    /// True when `event_type` (dot-separated segments) matches.
    pub fn matches(&self, event_type: &str) -> bool {
        let mut live = self.start.clone();
        let mut next = vec![0u64; live.len()];
        for segment in event_type.split('.') {
            let literal = self.literals.get(segment);
            let mut carry = 0;
            let mut any_live = false;
            for (i, n) in next.iter_mut().enumerate() {
                let l = live[i];
                let moving = l & (self.one[i] | literal.map_or(0, |bits| bits[i]));
                *n = (moving << 1) | carry | (l & self.any[i]);
                carry = moving >> 63;
                any_live |= *n != 0;
            }
            if !any_live {
                return false;
            }
            self.close(&mut next);
            std::mem::swap(&mut live, &mut next);
        }
        get(&live, self.states - 1)
    }
}

fn set(bits: &mut Bits, i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

fn get(bits: &Bits, i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}
