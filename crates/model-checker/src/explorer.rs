//! The explorer: breadth-first search over hashed states, a liveness pass over the explored graph, and
//! random walks for bounds too large to exhaust.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// A system to explore: its states, the steps that lead from one to the next, and what must hold.
pub trait Model {
    /// One global state (every CPU, every shared location). Hashing identifies visited states.
    type State: Clone + Eq + Hash + Debug;
    /// One atomic step of one participant.
    type Action: Clone + Debug;

    /// Where every exploration starts.
    fn initial_state(&self) -> Self::State;

    /// The steps enabled in `state`, appended to `actions`.
    fn actions(&self, state: &Self::State, actions: &mut Vec<Self::Action>);

    /// The state after `action` (one of [`Self::actions`] of `state`).
    fn next_state(&self, state: &Self::State, action: &Self::Action) -> Self::State;

    /// A broken safety property in `state`, if any. Such states are not explored further.
    fn violation(&self, state: &Self::State) -> Option<String>;

    /// Whether `state` is one the system must always be able to reach (liveness: "the donation
    /// completes", "every role finishes").
    fn goal_reached(&self, state: &Self::State) -> bool;

    /// What the goal is, in words (for liveness counterexamples).
    fn goal_description(&self) -> String;

    /// Whether `action` counts for liveness (fairness): the goal must be reachable from every
    /// reachable state through fair actions alone. Unfair actions are ones the environment may
    /// never take (an off CPU powering on, a new call being made). Default: every action is fair.
    fn fair(&self, _action: &Self::Action) -> bool {
        true
    }

    /// The lanes of a timeline (one per CPU, plus other actors).
    fn lanes(&self) -> Vec<String>;

    /// The lane and a one-line description of `action` taken in `state`.
    fn describe(&self, state: &Self::State, action: &Self::Action) -> (usize, String);
}

/// Limits of one exploration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Stop (verdict [`Verdict::Incomplete`]) after this many distinct states.
    pub max_states: usize,
    /// Print a progress line to stderr every second once a run takes longer than two seconds.
    pub progress: bool,
    /// How visited states are remembered.
    pub visited: Visited,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_states: 20_000_000,
            progress: false,
            visited: Visited::Exact,
        }
    }
}

/// How the exhaustive search remembers the states it has visited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visited {
    /// The full state, encoded (every field the state's `Hash` implementation writes, integers as
    /// LEB128 varints): no two distinct states are ever confused.
    Exact,
    /// Two independent 64-bit hashes of the state (16 bytes per state): a state is lost only if
    /// both collide at once (about n²/2¹²⁹ for n states).
    Fingerprints,
}

/// What an exploration concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every reachable state was explored; every property holds.
    Holds,
    /// A reachable state breaks a safety property (the counterexample leads to it).
    SafetyViolation,
    /// A reachable state from which the goal can never be reached (deadlock, blackout).
    LivenessViolation,
    /// Random walks found nothing (not a proof).
    NoViolationFound,
    /// The state limit was hit before the search ended.
    Incomplete,
}

impl Verdict {
    /// A short word for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Holds => "holds",
            Self::SafetyViolation => "SAFETY VIOLATION",
            Self::LivenessViolation => "LIVENESS VIOLATION",
            Self::NoViolationFound => "none found (random)",
            Self::Incomplete => "incomplete",
        }
    }
}

/// One step of a counterexample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceStep {
    /// Index into [`Counterexample::lanes`].
    pub lane: usize,
    /// What happened.
    pub text: String,
    /// The step that broke the property.
    pub highlighted: bool,
}

/// A path from the initial state to a state that breaks a property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    /// Which property, and how it broke.
    pub message: String,
    /// The lanes of the timeline.
    pub lanes: Vec<String>,
    /// The steps, in order.
    pub steps: Vec<TraceStep>,
}

impl Counterexample {
    /// The steps as a numbered list, one per line.
    pub fn numbered(&self) -> String {
        let mut text = String::new();
        for (index, step) in self.steps.iter().enumerate() {
            let mark = if step.highlighted { "  <==" } else { "" };
            text.push_str(&format!(
                "{:>3}. [{}] {}{}\n",
                index + 1,
                self.lanes.get(step.lane).map_or("?", String::as_str),
                step.text,
                mark
            ));
        }
        text.push_str(&format!("     => {}\n", self.message));
        text
    }
}

/// The result of one exploration.
#[derive(Clone, Debug)]
pub struct Exploration {
    /// The conclusion.
    pub verdict: Verdict,
    /// Distinct states (exhaustive search) or states visited (random walks).
    pub states: usize,
    /// Transitions followed.
    pub transitions: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Bytes the search held at its peak, approximately (visited set, parents, edges).
    pub memory_bytes: usize,
    /// How visited states were remembered (`None`: random walks, which remember none, or an
    /// incomplete search).
    pub visited: Option<Visited>,
    /// The counterexample, for a violation (the shortest one found).
    pub counterexample: Option<Counterexample>,
    /// Shortest counterexamples of the other properties found broken (one per property).
    pub further: Vec<Counterexample>,
}

impl Exploration {
    /// States per second.
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.states as f64 / seconds
        } else {
            0.0
        }
    }
}

/// The fingerprint a state is remembered by: two independent 64-bit hashes of it, SipHash-1-3
/// (`DefaultHasher::new()`, fixed keys, so runs are reproducible) and FNV-1a, a different
/// algorithm. Two distinct states share a fingerprint only if both hashes collide at once; for
/// independent hashes that is about n²/2¹²⁹ for n states (below 10⁻²⁴ for every run here).
fn fingerprint<S: Hash>(state: &S) -> u128 {
    let mut sip = DefaultHasher::new();
    state.hash(&mut sip);
    let mut fnv = Fnv1a(FNV_OFFSET);
    state.hash(&mut fnv);
    (u128::from(sip.finish()) << 64) | u128::from(fnv.finish())
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over the bytes a `Hash` implementation feeds it.
struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(FNV_PRIME);
        }
    }
}

/// The exact encoding of a state: every integer its `Hash` implementation writes, as a LEB128 varint
/// (signed ones zig-zagged), raw byte strings as they come. Derived `Hash` writes every field,
/// every enum discriminant and every collection's length, so for the model's state types two
/// states have the same encoding only if they are equal.
#[derive(Default)]
struct Encoder(Vec<u8>);

impl Encoder {
    fn varint(&mut self, mut value: u128) {
        loop {
            let low = u8::try_from(value & 0x7f).unwrap_or(0);
            value >>= 7;
            if value == 0 {
                self.0.push(low);
                return;
            }
            self.0.push(low | 0x80);
        }
    }

    fn signed(&mut self, value: i128) {
        self.varint(((value << 1) ^ (value >> 127)).cast_unsigned());
    }
}

impl Hasher for Encoder {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn write_u8(&mut self, value: u8) {
        self.varint(value.into());
    }
    fn write_u16(&mut self, value: u16) {
        self.varint(value.into());
    }
    fn write_u32(&mut self, value: u32) {
        self.varint(value.into());
    }
    fn write_u64(&mut self, value: u64) {
        self.varint(value.into());
    }
    fn write_u128(&mut self, value: u128) {
        self.varint(value);
    }
    fn write_usize(&mut self, value: usize) {
        self.varint(u128::try_from(value).unwrap_or(u128::MAX));
    }
    fn write_i8(&mut self, value: i8) {
        self.signed(value.into());
    }
    fn write_i16(&mut self, value: i16) {
        self.signed(value.into());
    }
    fn write_i32(&mut self, value: i32) {
        self.signed(value.into());
    }
    fn write_i64(&mut self, value: i64) {
        self.signed(value.into());
    }
    fn write_i128(&mut self, value: i128) {
        self.signed(value);
    }
    fn write_isize(&mut self, value: isize) {
        self.signed(i128::try_from(value).unwrap_or(i128::MAX));
    }
}

fn encode<S: Hash>(state: &S) -> Box<[u8]> {
    let mut encoder = Encoder::default();
    state.hash(&mut encoder);
    encoder.0.into_boxed_slice()
}

/// The visited states and their indices.
enum VisitedSet {
    Exact {
        index_of: HashMap<Box<[u8]>, u32>,
        /// Bytes of the encodings held.
        bytes: usize,
    },
    Fingerprints(HashMap<u128, u32>),
}

impl VisitedSet {
    fn new(visited: Visited) -> Self {
        match visited {
            Visited::Exact => Self::Exact {
                index_of: HashMap::new(),
                bytes: 0,
            },
            Visited::Fingerprints => Self::Fingerprints(HashMap::new()),
        }
    }

    /// The index of `state` if it was visited; otherwise records it under `new_index`.
    fn find_or_insert<S: Hash>(&mut self, state: &S, new_index: u32) -> Option<u32> {
        match self {
            Self::Exact { index_of, bytes } => {
                let key = encode(state);
                if let Some(&known) = index_of.get(&key) {
                    return Some(known);
                }
                *bytes += key.len();
                index_of.insert(key, new_index);
                None
            }
            Self::Fingerprints(index_of) => {
                let key = fingerprint(state);
                if let Some(&known) = index_of.get(&key) {
                    return Some(known);
                }
                index_of.insert(key, new_index);
                None
            }
        }
    }

    /// Bytes held, approximately (table slots, keys and their heap blocks).
    fn memory_bytes(&self) -> usize {
        match self {
            Self::Exact { index_of, bytes } => {
                // Each key is its own heap block: its bytes plus the allocator's header, about 16.
                index_of.capacity() * (size_of::<Box<[u8]>>() + size_of::<u32>() + 1)
                    + bytes
                    + index_of.len() * 16
            }
            Self::Fingerprints(index_of) => {
                index_of.capacity() * (size_of::<u128>() + size_of::<u32>() + 1)
            }
        }
    }
}

/// Prints a progress line at most once a second, after the first two seconds.
struct Progress<'a> {
    name: &'a str,
    enabled: bool,
    start: Instant,
    last: Instant,
}

impl<'a> Progress<'a> {
    fn new(name: &'a str, enabled: bool) -> Self {
        let now = Instant::now();
        Self {
            name,
            enabled,
            start: now,
            last: now,
        }
    }

    fn tick(&mut self, states: usize, queued: usize) {
        if !self.enabled || !states.is_multiple_of(4096) {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.start) < Duration::from_secs(2)
            || now.duration_since(self.last) < Duration::from_secs(1)
        {
            return;
        }
        self.last = now;
        let seconds = now.duration_since(self.start).as_secs_f64();
        eprintln!(
            "  .. {}: {} states, {} queued, {:.0} states/s, {:.1} s",
            self.name,
            states,
            queued,
            states as f64 / seconds,
            seconds
        );
    }
}

/// Every state reachable from the initial one, breadth first (so a counterexample is a shortest
/// one); then, if no safety property broke, the liveness pass: every reachable state must be able
/// to reach a goal state.
///
/// The search goes on after a safety violation (violating states are not expanded) and keeps the
/// first, shortest, counterexample of each property, a property being named by the violation
/// message's text before its first `:`.
pub fn explore<M: Model>(model: &M, name: &str, limits: Limits) -> Exploration {
    let start = Instant::now();
    let mut progress = Progress::new(name, limits.progress);
    let initial = model.initial_state();
    let mut visited = VisitedSet::new(limits.visited);
    // Per state: its parent and the action that led to it (the root has none).
    let mut parents: Vec<Option<(u32, M::Action)>> = Vec::new();
    let mut goal: Vec<bool> = Vec::new();
    let mut edges: Vec<(u32, u32)> = Vec::new();
    let mut queue: VecDeque<(M::State, u32)> = VecDeque::new();
    let mut actions = Vec::new();
    let mut transitions = 0usize;

    visited.find_or_insert(&initial, 0);
    parents.push(None);
    goal.push(model.goal_reached(&initial));
    // (state index, message) of the first violation of each property.
    let mut violations: Vec<(u32, String)> = Vec::new();
    if let Some(message) = model.violation(&initial) {
        violations.push((0, message));
    } else {
        queue.push_back((initial, 0));
    }

    while let Some((state, index)) = queue.pop_front() {
        progress.tick(parents.len(), queue.len());
        actions.clear();
        model.actions(&state, &mut actions);
        for action in actions.drain(..) {
            transitions += 1;
            let next = model.next_state(&state, &action);
            let Ok(new_index) = u32::try_from(parents.len()) else {
                return incomplete(parents.len(), transitions, start);
            };
            let next_index = match visited.find_or_insert(&next, new_index) {
                Some(known) => known,
                None => {
                    parents.push(Some((index, action.clone())));
                    goal.push(model.goal_reached(&next));
                    if parents.len() >= limits.max_states {
                        return incomplete(parents.len(), transitions, start);
                    }
                    match model.violation(&next) {
                        Some(message) => {
                            let property = property_of(&message);
                            if !violations
                                .iter()
                                .any(|(_, known)| property_of(known) == property)
                            {
                                violations.push((new_index, message));
                            }
                        }
                        None => queue.push_back((next, new_index)),
                    }
                    new_index
                }
            };
            if model.fair(&action) {
                edges.push((index, next_index));
            }
        }
    }

    let memory_bytes = visited.memory_bytes()
        + parents.capacity() * size_of::<Option<(u32, M::Action)>>()
        + edges.capacity() * size_of::<(u32, u32)>()
        + goal.capacity();
    if !violations.is_empty() {
        // The graph stops at violating states: liveness would be meaningless.
        let mut traces = violations
            .into_iter()
            .map(|(target, message)| trace(model, &parents, target, message, false));
        let counterexample = traces.next();
        return Exploration {
            verdict: Verdict::SafetyViolation,
            states: parents.len(),
            transitions,
            elapsed: start.elapsed(),
            counterexample,
            further: traces.collect(),
            memory_bytes,
            visited: Some(limits.visited),
        };
    }

    // Liveness: walk the fair edges backwards from every goal state; a state never reached cannot
    // reach a goal through fair actions. The lowest such index is one of the shallowest (indices follow BFS order).
    let count = parents.len();
    let mut reverse_start = vec![0u32; count + 1];
    for &(_, to) in &edges {
        reverse_start[to as usize + 1] += 1;
    }
    for slot in 1..=count {
        reverse_start[slot] += reverse_start[slot - 1];
    }
    let mut fill = reverse_start.clone();
    let mut reverse = vec![0u32; edges.len()];
    for &(from, to) in &edges {
        reverse[fill[to as usize] as usize] = from;
        fill[to as usize] += 1;
    }
    drop(edges);
    let mut can_reach_goal = goal.clone();
    let mut pending: Vec<u32> = (0..count)
        .filter(|&index| goal[index])
        .filter_map(|index| u32::try_from(index).ok())
        .collect();
    while let Some(index) = pending.pop() {
        let range =
            reverse_start[index as usize] as usize..reverse_start[index as usize + 1] as usize;
        for &from in &reverse[range] {
            if !can_reach_goal[from as usize] {
                can_reach_goal[from as usize] = true;
                pending.push(from);
            }
        }
    }
    match can_reach_goal.iter().position(|reachable| !reachable) {
        Some(stuck) => {
            let message = format!(
                "after the marked step, no sequence of steps reaches the goal: {}",
                model.goal_description()
            );
            let stuck = u32::try_from(stuck).unwrap_or(u32::MAX);
            Exploration {
                verdict: Verdict::LivenessViolation,
                states: count,
                transitions,
                elapsed: start.elapsed(),
                counterexample: Some(trace(model, &parents, stuck, message, true)),
                further: Vec::new(),
                memory_bytes,
                visited: Some(limits.visited),
            }
        }
        None => Exploration {
            verdict: Verdict::Holds,
            states: count,
            transitions,
            elapsed: start.elapsed(),
            counterexample: None,
            further: Vec::new(),
            memory_bytes,
            visited: Some(limits.visited),
        },
    }
}

fn incomplete(states: usize, transitions: usize, start: Instant) -> Exploration {
    Exploration {
        verdict: Verdict::Incomplete,
        states,
        transitions,
        elapsed: start.elapsed(),
        counterexample: None,
        further: Vec::new(),
        memory_bytes: 0,
        visited: None,
    }
}

/// The name of the property a violation message is about: its text before the first `:`.
fn property_of(message: &str) -> &str {
    message.split(':').next().unwrap_or(message)
}

/// Rebuilds the path to `target` by following parents, replays it to describe each step; a
/// liveness counterexample gets a continuation past its point of no return.
fn trace<M: Model>(
    model: &M,
    parents: &[Option<(u32, M::Action)>],
    target: u32,
    message: String,
    liveness: bool,
) -> Counterexample {
    let mut path = Vec::new();
    let mut cursor = target as usize;
    while let Some(Some((parent, action))) = parents.get(cursor) {
        path.push(action.clone());
        cursor = *parent as usize;
    }
    path.reverse();
    let (mut counterexample, last) = replay(model, &path, message);
    if liveness {
        counterexample.steps.extend(continuation(model, last, 60));
    }
    counterexample
}

/// Describes the steps of `path` from the initial state; the last one is highlighted (for a safety
/// violation it broke the property; for a liveness violation it is the point of no return). Also
/// returns the state the path ends in.
fn replay<M: Model>(model: &M, path: &[M::Action], message: String) -> (Counterexample, M::State) {
    let mut state = model.initial_state();
    let mut steps = Vec::with_capacity(path.len());
    for (position, action) in path.iter().enumerate() {
        let (lane, text) = model.describe(&state, action);
        steps.push(TraceStep {
            lane,
            text,
            highlighted: position + 1 == path.len(),
        });
        state = model.next_state(&state, action);
    }
    let counterexample = Counterexample {
        message,
        lanes: model.lanes(),
        steps,
    };
    (counterexample, state)
}

/// After the point of no return of a liveness violation: what happens next if the system keeps
/// taking its last enabled step that leads somewhere new (the erratum model lists the hypervisor's
/// steps last), until
/// a state repeats or nothing can move. Illustration only: every continuation misses the goal.
fn continuation<M: Model>(model: &M, mut state: M::State, max_steps: usize) -> Vec<TraceStep> {
    let mut seen = std::collections::HashSet::new();
    seen.insert(fingerprint(&state));
    let mut steps = Vec::new();
    let mut actions = Vec::new();
    for _ in 0..max_steps {
        actions.clear();
        model.actions(&state, &mut actions);
        let next = actions.iter().rev().find_map(|action| {
            let next = model.next_state(&state, action);
            (!seen.contains(&fingerprint(&next))).then_some((action.clone(), next))
        });
        let Some((action, next)) = next else {
            let text = if actions.is_empty() {
                "(then) nothing can move any more".to_string()
            } else {
                "(then) every step leads back to a state already seen: a cycle".to_string()
            };
            steps.push(TraceStep {
                lane: 0,
                text,
                highlighted: false,
            });
            break;
        };
        let (lane, text) = model.describe(&state, &action);
        steps.push(TraceStep {
            lane,
            text: format!("(then) {text}"),
            highlighted: false,
        });
        seen.insert(fingerprint(&next));
        state = next;
    }
    // Keep it short: up to the principal lane's (lane 0's) last move, then one summary line.
    let principal_last = steps
        .iter()
        .rposition(|step| step.lane == 0 && !step.text.starts_with("(then) nothing"));
    if let Some(last) = principal_last
        && last + 2 < steps.len()
    {
        steps.truncate(last + 1);
        steps.push(TraceStep {
            lane: 0,
            text: "(then) only the other lanes move; the goal stays out of reach".into(),
            highlighted: false,
        });
    }
    steps
}

/// A small deterministic generator (xorshift64*), so a failing walk can be replayed from its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number below `bound` (which must be positive).
    pub fn below(&mut self, bound: usize) -> usize {
        let mut value = self.0;
        value ^= value >> 12;
        value ^= value << 25;
        value ^= value >> 27;
        self.0 = value;
        let bound = u64::try_from(bound.max(1)).unwrap_or(u64::MAX);
        usize::try_from(value.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound).unwrap_or(0)
    }
}

/// `walks` random paths of at most `depth` steps: safety is checked in every state visited, and a
/// state with no step left that is not a goal is reported as a deadlock. Finds bugs; proves nothing.
pub fn random_walks<M: Model>(
    model: &M,
    name: &str,
    walks: usize,
    depth: usize,
    seed: u64,
    limits: Limits,
) -> Exploration {
    let start = Instant::now();
    let mut progress = Progress::new(name, limits.progress);
    let mut rng = Rng::new(seed);
    let mut visited = 0usize;
    let mut actions = Vec::new();
    // A walk keeps one state and its path: nothing grows with the number of walks.
    let memory_bytes = depth * size_of::<M::Action>();
    for _ in 0..walks {
        let mut state = model.initial_state();
        let mut path: Vec<M::Action> = Vec::new();
        for _ in 0..depth {
            visited += 1;
            progress.tick(visited, 0);
            if let Some(message) = model.violation(&state) {
                let (counterexample, _) = replay(model, &path, message);
                return Exploration {
                    verdict: Verdict::SafetyViolation,
                    states: visited,
                    transitions: visited,
                    elapsed: start.elapsed(),
                    counterexample: Some(counterexample),
                    further: Vec::new(),
                    memory_bytes,
                    visited: None,
                };
            }
            actions.clear();
            model.actions(&state, &mut actions);
            if actions.is_empty() {
                if !model.goal_reached(&state) {
                    let message = format!(
                        "deadlock: no step is possible and {} has not happened",
                        model.goal_description()
                    );
                    return Exploration {
                        verdict: Verdict::LivenessViolation,
                        states: visited,
                        transitions: visited,
                        elapsed: start.elapsed(),
                        counterexample: Some(replay(model, &path, message).0),
                        further: Vec::new(),
                        memory_bytes,
                        visited: None,
                    };
                }
                break;
            }
            let action = actions.swap_remove(rng.below(actions.len()));
            state = model.next_state(&state, &action);
            path.push(action);
        }
    }
    Exploration {
        verdict: Verdict::NoViolationFound,
        states: visited,
        transitions: visited,
        elapsed: start.elapsed(),
        counterexample: None,
        further: Vec::new(),
        memory_bytes,
        visited: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph given as a table: state → successors; goal states listed.
    struct Graph {
        edges: &'static [(u8, &'static [u8])],
        goals: &'static [u8],
        bad: Option<u8>,
    }

    impl Model for Graph {
        type State = u8;
        type Action = u8;
        fn initial_state(&self) -> u8 {
            0
        }
        fn actions(&self, state: &u8, actions: &mut Vec<u8>) {
            if let Some((_, next)) = self.edges.iter().find(|(from, _)| from == state) {
                actions.extend_from_slice(next);
            }
        }
        fn next_state(&self, _: &u8, action: &u8) -> u8 {
            *action
        }
        fn violation(&self, state: &u8) -> Option<String> {
            (Some(*state) == self.bad).then(|| format!("reached {state}"))
        }
        fn goal_reached(&self, state: &u8) -> bool {
            self.goals.contains(state)
        }
        fn goal_description(&self) -> String {
            "a goal".into()
        }
        fn lanes(&self) -> Vec<String> {
            vec!["only".into()]
        }
        fn describe(&self, _: &u8, action: &u8) -> (usize, String) {
            (0, format!("to {action}"))
        }
    }

    #[test]
    fn verdicts_on_small_graphs() {
        // (graph, expected verdict, expected path to the offending state)
        let table: [(Graph, Verdict, &[&str]); 4] = [
            (
                Graph {
                    edges: &[(0, &[1, 2]), (1, &[0])],
                    goals: &[2],
                    bad: None,
                },
                Verdict::Holds,
                &[],
            ),
            // State 1 loops for ever: no terminal state shows it, the liveness pass does.
            (
                Graph {
                    edges: &[(0, &[1, 2]), (1, &[1])],
                    goals: &[2],
                    bad: None,
                },
                Verdict::LivenessViolation,
                &["to 1"],
            ),
            // A join: 3 is reached from 1 and from 2, and the goal from 3: holds.
            (
                Graph {
                    edges: &[(0, &[1, 2]), (1, &[3]), (2, &[3]), (3, &[4])],
                    goals: &[4],
                    bad: None,
                },
                Verdict::Holds,
                &[],
            ),
            // Shortest path to the bad state, breadth first.
            (
                Graph {
                    edges: &[(0, &[1, 2]), (1, &[3]), (2, &[5]), (3, &[5])],
                    goals: &[5],
                    bad: Some(5),
                },
                Verdict::SafetyViolation,
                &["to 2", "to 5"],
            ),
        ];
        for (graph, verdict, path) in table {
            let exploration = explore(&graph, "graph", Limits::default());
            assert_eq!(exploration.verdict, verdict);
            let steps: Vec<String> = exploration
                .counterexample
                .map(|counterexample| {
                    counterexample
                        .steps
                        .into_iter()
                        .filter(|step| !step.text.starts_with("(then)"))
                        .map(|step| step.text)
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(steps, path);
        }
    }

    #[test]
    fn random_walks_report_deadlocks() {
        let graph = Graph {
            edges: &[(0, &[1]), (1, &[])],
            goals: &[],
            bad: None,
        };
        let exploration = random_walks(&graph, "graph", 3, 10, 1, Limits::default());
        assert_eq!(exploration.verdict, Verdict::LivenessViolation);
    }
}

#[cfg(test)]
mod encoding_tests {
    use std::collections::{BTreeMap, HashSet};

    use super::encode;

    #[derive(Hash)]
    enum Shape {
        Unit,
        One(u8),
        Two(u64, bool),
    }

    /// Distinct values of a state-like type (enums, integers of several widths, options, maps)
    /// never share an encoding.
    #[test]
    fn distinct_states_have_distinct_encodings() {
        let mut seen = HashSet::new();
        let mut count = 0;
        for shape in [0u64, 1, 127, 128, 300, u64::MAX] {
            for flag in [false, true] {
                for map_size in 0..3u64 {
                    let map: BTreeMap<u64, u8> = (0..map_size).map(|key| (key, 1)).collect();
                    for variant in [
                        Shape::Unit,
                        Shape::One(u8::try_from(shape % 256).unwrap_or(0)),
                        Shape::Two(shape, flag),
                    ] {
                        for option in [None, Some(-1i64), Some(shape.cast_signed())] {
                            let state = (&variant, option, &map, flag);
                            count += 1;
                            seen.insert(encode(&state));
                        }
                    }
                }
            }
        }
        // Every combination except the ones equal as values (repeated `One`/`Two` payloads of the
        // same number, and `Some(shape)` equal to `Some(-1)` for u64::MAX).
        let distinct: HashSet<String> = {
            let mut values = HashSet::new();
            for shape in [0u64, 1, 127, 128, 300, u64::MAX] {
                for flag in [false, true] {
                    for map_size in 0..3u64 {
                        for variant in 0..3 {
                            let payload = match variant {
                                0 => String::from("unit"),
                                1 => format!("one {}", shape % 256),
                                _ => format!("two {shape} {flag}"),
                            };
                            for option in [None, Some(-1i64), Some(shape.cast_signed())] {
                                values.insert(format!("{payload} {option:?} {map_size} {flag}"));
                            }
                        }
                    }
                }
            }
            values
        };
        assert!(count > distinct.len());
        assert_eq!(seen.len(), distinct.len());
    }
}
