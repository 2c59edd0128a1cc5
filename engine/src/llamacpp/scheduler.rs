//! The llama.cpp backend's scheduler: one thread owns the model and its context and runs
//! continuous batching over up to `max_num_seqs` sequence slots, each a llama.cpp sequence id
//! with a KV cache of its own (`context_length` cells). At every step each running sequence
//! adds its last token, and prompts waiting to be processed fill what is left of the batch in
//! chunks (so a long prompt does not stall the streams already running); new sequences join
//! between steps. A slot keeps the tokens of its last sequence in its cache: a new prompt goes
//! to the free slot sharing the longest prefix with it and skips that prefix (llama.cpp's
//! server does the same), which multi-turn chats hit. The cache is allocated once, so what
//! slots keep costs no memory beyond it.

use super::embed::{EmbedRequest, Embedder};
use super::step::{Choice, TokenChooser};
use crate::logprobs::{log_softmax, ranked_position, Position};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// A sequence to run: one choice of a request.
pub struct SeqRequest {
    /// The prompt's tokens (at least one).
    pub prompt: Vec<u32>,
    /// The most tokens to generate.
    pub max_tokens: usize,
    /// How its tokens are chosen.
    pub chooser: TokenChooser,
    /// Where its events go.
    pub events: UnboundedSender<SeqEvent>,
    /// Set when the request no longer wants it (a client gone, a stop string, a cancel).
    pub cancel: Arc<AtomicBool>,
    /// Score the prompt (`echo` with `logprobs`): each prompt token after the first gets its
    /// log probability and this many alternatives, from the logits of the token before it.
    pub score_prompt: Option<usize>,
}

/// What a sequence reports.
#[derive(Debug)]
pub enum SeqEvent {
    /// The prompt's tokens after the first, scored (only when asked; before any token).
    Prompt(Vec<Position>),
    /// A token was generated (an end-of-generation token too: it counts as generated).
    Token {
        /// The token.
        id: u32,
        /// Its log probabilities, when asked for.
        position: Option<Position>,
    },
    /// The sequence ended: `stop` (an ending token, see [`crate::rules`], or its constraint
    /// completed) or
    /// `length` (`max_tokens`, or the context).
    End(&'static str),
    /// The engine failed on it; the message is for the worker's log and the client.
    Failed(String),
}

/// The engine's shape: what the scheduler was built with.
pub struct Shape {
    /// Sequence slots (llama.cpp sequence ids).
    pub slots: usize,
    /// Tokens one sequence may hold (prompt and generated): its slot's KV cells.
    pub context_length: usize,
    /// Tokens one decode step takes at most.
    pub batch: usize,
}

/// A sequence in a slot.
struct Running {
    req: SeqRequest,
    /// Prompt tokens not yet decoded.
    pending: VecDeque<u32>,
    /// The last token generated, to decode next.
    next: Option<u32>,
    generated: usize,
    /// Its row in the batch being decoded, when it asked for logits.
    row: Option<i32>,
    /// When scoring the prompt: rows of this batch whose logits score a prompt token, with
    /// that token.
    scoring: Vec<(i32, u32)>,
    /// The prompt tokens scored so far.
    scored: Vec<Position>,
}

#[derive(Default)]
struct Slot {
    /// The tokens in the KV cache under this slot's sequence id, in order.
    cached: Vec<u32>,
    running: Option<Running>,
}

/// What the llama.cpp thread is given.
pub enum Work {
    /// A sequence to generate (boxed: its chooser is large, an embedding request small).
    Seq(Box<SeqRequest>),
    /// Inputs to embed: run between steps, on the embedding context.
    Embed(EmbedRequest),
}

/// Run the scheduler until every sender of `requests` is gone; embedding requests go to
/// `embedder` as they arrive.
pub fn run(
    mut ctx: LlamaContext<'_>,
    requests: Receiver<Work>,
    shape: Shape,
    embedder: &mut Embedder<'_>,
) {
    let mut slots: Vec<Slot> = (0..shape.slots).map(|_| Slot::default()).collect();
    let mut waiting: VecDeque<SeqRequest> = VecDeque::new();
    let mut batch = LlamaBatch::new(shape.batch, 1);
    loop {
        if slots.iter().all(|s| s.running.is_none()) && waiting.is_empty() {
            match requests.recv() {
                Ok(w) => take(w, &mut waiting, embedder),
                Err(_) => return,
            }
        }
        for w in requests.try_iter() {
            take(w, &mut waiting, embedder);
        }
        waiting.retain(|r| !r.cancel.load(Ordering::Relaxed));
        for s in &mut slots {
            if s.running
                .as_ref()
                .is_some_and(|r| r.req.cancel.load(Ordering::Relaxed))
            {
                s.running = None;
            }
        }
        admit(&mut ctx, &mut slots, &mut waiting);
        if !fill(&mut batch, &mut slots, &shape) {
            continue;
        }
        if let Err(e) = ctx.decode(&mut batch) {
            fail_all(&mut slots, &format!("llama.cpp could not decode: {e}"));
            ctx.clear_kv_cache();
            continue;
        }
        for (i, s) in slots.iter_mut().enumerate() {
            step(&ctx, i, s, &shape);
        }
    }
}

fn take(w: Work, waiting: &mut VecDeque<SeqRequest>, embedder: &mut Embedder<'_>) {
    match w {
        Work::Seq(r) => waiting.push_back(*r),
        Work::Embed(e) => embedder.run(e),
    }
}

/// Put waiting requests into free slots: each into the free slot whose cache shares the
/// longest prefix with its prompt, the rest of that slot's cache dropped.
fn admit(ctx: &mut LlamaContext<'_>, slots: &mut [Slot], waiting: &mut VecDeque<SeqRequest>) {
    while !waiting.is_empty() {
        let Some(i) = best_slot(slots, &waiting[0].prompt) else {
            return;
        };
        let Some(req) = waiting.pop_front() else {
            return;
        };
        let s = &mut slots[i];
        // At least the prompt's last token is decoded again: its logits start the sequence.
        // A scored prompt is decoded whole, as each token's logits score the next.
        let keep = match req.score_prompt {
            Some(_) => 0,
            None => common_prefix(&s.cached, &req.prompt).min(req.prompt.len() - 1),
        };
        if ctx
            .kv_cache_seq_rm(i as i32, Some(keep as u32), None)
            .is_err()
        {
            ctx.kv_cache_seq_rm(i as i32, None, None).ok();
            s.cached.clear();
        }
        s.cached.truncate(keep);
        let pending = req.prompt[s.cached.len()..].iter().copied().collect();
        s.running = Some(Running {
            req,
            pending,
            next: None,
            generated: 0,
            row: None,
            scoring: Vec::new(),
            scored: Vec::new(),
        });
    }
}

/// The free slot sharing the longest prefix with `prompt` (ties: the least cached, so long
/// caches stay for the prompts that match them).
fn best_slot(slots: &[Slot], prompt: &[u32]) -> Option<usize> {
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.running.is_none())
        .max_by_key(|(_, s)| {
            (
                common_prefix(&s.cached, prompt),
                std::cmp::Reverse(s.cached.len()),
            )
        })
        .map(|(i, _)| i)
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// This step's batch: every running sequence's last token first, then prompt chunks in what
/// is left. Returns whether there is anything to decode.
fn fill(batch: &mut LlamaBatch, slots: &mut [Slot], shape: &Shape) -> bool {
    batch.clear();
    let mut rows = 0i32;
    let room = shape.batch as i32;
    for (i, s) in slots.iter_mut().enumerate() {
        let Some(r) = s.running.as_mut() else {
            continue;
        };
        r.row = None;
        if let Some(t) = r.next.take() {
            let pos = s.cached.len() as i32;
            if batch
                .add(LlamaToken(t as i32), pos, &[i as i32], true)
                .is_err()
            {
                r.next = Some(t);
                continue;
            }
            s.cached.push(t);
            r.row = Some(rows);
            rows += 1;
        }
    }
    for (i, s) in slots.iter_mut().enumerate() {
        let Some(r) = s.running.as_mut() else {
            continue;
        };
        while rows < room {
            let Some(t) = r.pending.pop_front() else {
                break;
            };
            let next = r.pending.front().copied();
            let scoring = r.req.score_prompt.is_some();
            let pos = s.cached.len() as i32;
            if batch
                .add(
                    LlamaToken(t as i32),
                    pos,
                    &[i as i32],
                    next.is_none() || scoring,
                )
                .is_err()
            {
                r.pending.push_front(t);
                break;
            }
            s.cached.push(t);
            match next {
                None => r.row = Some(rows),
                Some(next) if scoring => r.scoring.push((rows, next)),
                Some(_) => {}
            }
            rows += 1;
        }
    }
    rows > 0
}

/// After a decode: the sequence in slot `i` chooses its next token if it had logits, and
/// ends when it is done.
fn step(ctx: &LlamaContext<'_>, i: usize, s: &mut Slot, shape: &Shape) {
    let Some(r) = s.running.as_mut() else { return };
    score_prompt(ctx, r);
    let Some(row) = r.row.take() else { return };
    if r.generated == 0 && r.req.score_prompt.is_some() {
        let scored = std::mem::take(&mut r.scored);
        let _ = r.req.events.send(SeqEvent::Prompt(scored));
    }
    // `max_tokens: 0`: a prompt scored, nothing generated.
    let chosen = match r.req.max_tokens {
        0 => Err(None),
        _ => r
            .req
            .chooser
            .choose(&mut ctx.get_logits_ith(row).to_vec())
            .map_err(Some),
    };
    let end = match chosen {
        Err(None) => Some(Some(SeqEvent::End("length"))),
        Ok(Choice { id, position }) => {
            r.generated += 1;
            let sent = r.req.events.send(SeqEvent::Token { id, position }).is_ok();
            if !sent {
                Some(None)
            } else if r.req.chooser.ends(id) || r.req.chooser.constraint_done() {
                Some(Some(SeqEvent::End("stop")))
            } else if r.generated >= r.req.max_tokens || s.cached.len() + 1 >= shape.context_length
            {
                Some(Some(SeqEvent::End("length")))
            } else {
                r.next = Some(id);
                None
            }
        }
        Err(Some(e)) => Some(Some(SeqEvent::Failed(e))),
    };
    if let Some(last) = end {
        if let Some(event) = last {
            let _ = r.req.events.send(event);
        }
        tracing::trace!(slot = i, generated = r.generated, "sequence ended");
        s.running = None;
    }
}

/// The prompt tokens this batch scored: the raw log probabilities (no penalties: nothing
/// was generated) of each from the logits of the token before it.
fn score_prompt(ctx: &LlamaContext<'_>, r: &mut Running) {
    let top_n = r.req.score_prompt.unwrap_or(0);
    for (row, next) in r.scoring.drain(..) {
        let lp = log_softmax(ctx.get_logits_ith(row).to_vec());
        r.scored.push(ranked_position(&lp, next, top_n));
    }
}

fn fail_all(slots: &mut [Slot], why: &str) {
    for s in slots.iter_mut() {
        if let Some(r) = s.running.take() {
            let _ = r.req.events.send(SeqEvent::Failed(why.to_string()));
        }
        s.cached.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_goes_to_the_free_slot_sharing_its_longest_prefix() {
        let slot = |cached: &[u32], busy: bool| Slot {
            cached: cached.to_vec(),
            running: busy.then(|| panic!("no running sequences in this test")),
        };
        let slots = vec![
            slot(&[1, 2, 3], false),
            slot(&[1, 2, 3, 4, 5], false),
            slot(&[], false),
        ];
        assert_eq!(best_slot(&slots, &[1, 2, 3, 4, 9]), Some(1));
        assert_eq!(
            best_slot(&slots, &[7]),
            Some(2),
            "no match: the least cached"
        );
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
    }
}
