//! A text completion with several prompts: each prompt runs as its own request on the backend
//! (all at once when not streamed, so the backend batches them; one after the other when
//! streamed, so chunks keep their order), and their choices are put together as OpenAI numbers
//! them: prompt `p`'s `i`-th choice is choice `p * n + i`. Usage sums every prompt's.

use crate::{Backend, EngineError};
use protocol::openai::response::{Chunk, Completion, TextCompletion, Usage};
use protocol::openai::{CompletionRequest, GenerateRequest};
use tokio_util::sync::CancellationToken;

/// Run the completion `c`, which has several prompts, on `backend` (see the module's text).
pub(crate) async fn generate_each(
    backend: &dyn Backend,
    c: &CompletionRequest,
    on_chunk: &mut (dyn FnMut(Chunk) + Send),
    cancel: &CancellationToken,
) -> Result<Completion, EngineError> {
    let n = c.sampling.n as usize;
    let subs: Vec<GenerateRequest> = c
        .prompts
        .iter()
        .map(|p| {
            let mut one = c.clone();
            one.prompts = vec![p.clone()];
            GenerateRequest::Completion(one)
        })
        .collect();
    let mut done = Vec::with_capacity(subs.len());
    if c.stream {
        let (mut id, mut before) = (None::<String>, Usage::default());
        for (p, sub) in subs.iter().enumerate() {
            let mut forward = |chunk: Chunk| {
                if let Chunk::Text(mut t) = chunk {
                    // Each prompt's usage chunk: one for the whole request comes last.
                    if t.choices.is_empty() {
                        return;
                    }
                    renumber(&mut t, p * n, &mut id);
                    if let Some(Some(u)) = t.usage.as_mut() {
                        *u = add(*u, before);
                    }
                    on_chunk(Chunk::Text(t));
                }
            };
            let r = text(backend.generate(sub, &mut forward, cancel).await?)?;
            before = add(before, r.usage.flatten().unwrap_or_default());
            done.push(r);
        }
    } else {
        let runs = subs
            .iter()
            .map(|sub| async move { backend.generate(sub, &mut |_| {}, cancel).await });
        for r in futures::future::try_join_all(runs).await? {
            done.push(text(r)?);
        }
    }
    let merged = merge(done, n)?;
    if c.stream && c.include_usage {
        let mut last = merged.clone();
        last.choices.clear();
        on_chunk(Chunk::Text(last));
    }
    Ok(Completion::Text(merged))
}

/// The text completion a backend answered a completion request with.
fn text(c: Completion) -> Result<TextCompletion, EngineError> {
    match c {
        Completion::Text(t) => Ok(t),
        Completion::Chat(_) => Err(EngineError::Internal(
            "a chat answer to a text completion".into(),
        )),
    }
}

/// Shift a prompt's choice indices by `offset` and give it the request's one id (the first).
fn renumber(t: &mut TextCompletion, offset: usize, id: &mut Option<String>) {
    for choice in &mut t.choices {
        choice.index += offset;
    }
    t.id = id.get_or_insert_with(|| t.id.clone()).clone();
}

/// The prompts' completions as one: their choices renumbered, their usage summed.
fn merge(done: Vec<TextCompletion>, n: usize) -> Result<TextCompletion, EngineError> {
    let mut id = None;
    let mut usage = Usage::default();
    let mut all = None::<TextCompletion>;
    for (p, mut t) in done.into_iter().enumerate() {
        renumber(&mut t, p * n, &mut id);
        usage = add(usage, t.usage.flatten().unwrap_or_default());
        match all.as_mut() {
            None => all = Some(t),
            Some(a) => a.choices.append(&mut t.choices),
        }
    }
    let mut all = all.ok_or_else(|| EngineError::Invalid("a request without a prompt".into()))?;
    all.usage = Some(Some(usage));
    Ok(all)
}

fn add(a: Usage, b: Usage) -> Usage {
    Usage::new(
        a.prompt_tokens + b.prompt_tokens,
        a.completion_tokens + b.completion_tokens,
    )
}
