//! WebSocket continuation (docs/PROTOCOL.md §3, pi 1.6.0's and Codex CLI's
//! rule), as pure functions.
//!
//! A later turn on the same connection may send `previous_response_id` and
//! only the new input items, but only when every field except `input` is
//! unchanged and the new input strictly extends the last turn's input plus
//! the server's output. Anything else sends the whole body.
//!
//! The client re-sends the server's output items in its own encoding (pi
//! adds `annotations`, drops nothing that names the item), so an output item
//! matches the client's item of the same type that names it the same way
//! (`id`, `call_id`); input items must match exactly.

use serde_json::{Map, Value};

/// What a finished turn leaves on its connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// The body's fields except `input` and `previous_response_id`.
    rest: Map<String, Value>,
    /// The whole input the turn stood for (the full body's, never a delta).
    input: Vec<Value>,
    /// The server's output items, in order.
    output: Vec<Value>,
    response_id: String,
}

impl Turn {
    /// A finished turn of the full `body`, answered as `response_id` with
    /// `output`. `None` when the body has no input array or the id is empty.
    pub fn new(body: &Map<String, Value>, response_id: &str, output: Vec<Value>) -> Option<Turn> {
        let input = body.get("input")?.as_array()?.clone();
        if response_id.is_empty() {
            return None;
        }
        Some(Turn {
            rest: rest_of(body),
            input,
            output,
            response_id: response_id.to_owned(),
        })
    }
}

/// Whether a field is one continuation leaves to the turn.
fn is_turn_field(key: &str) -> bool {
    key == "input" || key == "previous_response_id"
}

fn rest_of(body: &Map<String, Value>) -> Map<String, Value> {
    let mut rest = body.clone();
    rest.retain(|k, _| !is_turn_field(k));
    rest
}

/// Whether `body`'s fields other than the turn's are `rest`, without a copy.
fn same_rest(body: &Map<String, Value>, rest: &Map<String, Value>) -> bool {
    let mut fields = 0;
    for (k, v) in body.iter().filter(|(k, _)| !is_turn_field(k)) {
        if rest.get(k) != Some(v) {
            return false;
        }
        fields += 1;
    }
    fields == rest.len()
}

/// Whether the client's item stands for the server's output item.
fn same_output(server: &Value, client: &Value) -> bool {
    if server == client {
        return true;
    }
    let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let named = field(server, "id").is_some() || field(server, "call_id").is_some();
    named
        && field(server, "type") == field(client, "type")
        && field(server, "id") == field(client, "id")
        && field(server, "call_id") == field(client, "call_id")
}

/// The new input items of `body` after `last`, when `body` may continue it.
pub fn delta<'b>(last: &Turn, body: &'b Map<String, Value>) -> Option<&'b [Value]> {
    let input = body.get("input")?.as_array()?;
    if !same_rest(body, &last.rest) {
        return None;
    }
    let (known, after) = (last.input.len(), last.input.len() + last.output.len());
    if input.len() <= after || input[..known] != last.input[..] {
        return None;
    }
    let outputs_match = last
        .output
        .iter()
        .zip(&input[known..after])
        .all(|(server, client)| same_output(server, client));
    outputs_match.then(|| &input[after..])
}

/// The body to send instead of `body` on a connection whose last turn was
/// `last`: its continuation, when allowed (`None`: send `body` as it is).
pub fn continuation(last: Option<&Turn>, body: &Map<String, Value>) -> Option<Map<String, Value>> {
    let last = last?;
    let new = delta(last, body)?;
    let mut out = Map::new();
    for (k, v) in body {
        if k == "input" {
            out.insert(
                "previous_response_id".into(),
                last.response_id.clone().into(),
            );
            out.insert(k.clone(), Value::Array(new.to_vec()));
        } else if k != "previous_response_id" {
            out.insert(k.clone(), v.clone());
        }
    }
    Some(out)
}

/// Collects what a turn's events say about it: the response id and the
/// output items, from `response.created`, `response.output_item.done` and
/// the terminal event.
#[derive(Debug, Default)]
pub struct Recorder {
    response_id: String,
    output: Vec<Value>,
    completed: bool,
}

impl Recorder {
    /// Notes one event (its type and JSON).
    pub fn note(&mut self, event_type: &str, payload: &str) {
        let wanted = matches!(
            event_type,
            "response.created" | "response.output_item.done" | "response.completed"
        );
        if !wanted {
            return;
        }
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(payload) else {
            return;
        };
        if let Some(id) = event
            .get("response")
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str)
        {
            self.response_id = id.to_owned();
        }
        if event_type == "response.output_item.done"
            && let Some(item) = event.get("item")
        {
            self.output.push(item.clone());
        }
        if event_type == "response.completed" {
            self.completed = true;
        }
    }

    /// The finished turn of `body`, when the response completed.
    pub fn finish(self, body: &Map<String, Value>) -> Option<Turn> {
        if !self.completed {
            return None;
        }
        Turn::new(body, &self.response_id, self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn user(text: &str) -> Value {
        json!({"role":"user","content":[{"type":"input_text","text":text}]})
    }

    fn first() -> (Map<String, Value>, Turn) {
        let body = obj(json!({"model":"m","input":[user("a")],"tools":[]}));
        let out = vec![
            json!({"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"hi"}]}),
        ];
        let turn = Turn::new(&body, "resp_1", out).unwrap();
        (body, turn)
    }

    /// pi's re-encoding of the server's message: same type and id, its own
    /// content shape.
    fn pi_echo() -> Value {
        json!({"type":"message","id":"msg_1","role":"assistant","status":"completed","content":[{"type":"output_text","text":"hi","annotations":[]}]})
    }

    #[test]
    fn a_later_turn_sends_only_its_new_items() {
        let (_, turn) = first();
        let next = obj(json!({"model":"m","input":[user("a"), pi_echo(), user("b")],"tools":[]}));
        let sent = continuation(Some(&turn), &next).unwrap();
        assert_eq!(
            Value::Object(sent),
            json!({"model":"m","previous_response_id":"resp_1","input":[user("b")],"tools":[]})
        );
    }

    #[test]
    fn anything_else_sends_the_whole_body() {
        let (_, turn) = first();
        let full = |v: Value| {
            let b = obj(v);
            assert_eq!(continuation(Some(&turn), &b), None, "{b:?}");
        };
        // A changed field.
        full(json!({"model":"m2","input":[user("a"), pi_echo(), user("b")],"tools":[]}));
        // A field added, a field gone.
        full(json!({"model":"m","input":[user("a"), pi_echo(), user("b")],"tools":[],"top_p":1}));
        full(json!({"model":"m","input":[user("a"), pi_echo(), user("b")]}));
        // Nothing new.
        full(json!({"model":"m","input":[user("a"), pi_echo()],"tools":[]}));
        // A changed earlier input.
        full(json!({"model":"m","input":[user("A"), pi_echo(), user("b")],"tools":[]}));
        // An output item that is not the server's.
        full(
            json!({"model":"m","input":[user("a"), {"type":"message","id":"msg_2"}, user("b")],"tools":[]}),
        );
        // The output left out.
        full(json!({"model":"m","input":[user("a"), user("b")],"tools":[]}));
        // No last turn.
        let b = obj(json!({"model":"m","input":[user("a")]}));
        assert_eq!(continuation(None, &b), None);
    }

    #[test]
    fn a_turn_is_recorded_only_when_it_completed() {
        let (body, _) = first();
        let mut r = Recorder::default();
        r.note("response.created", r#"{"response":{"id":"resp_9"}}"#);
        r.note(
            "response.output_item.done",
            r#"{"item":{"type":"function_call","id":"fc_1","call_id":"c1"}}"#,
        );
        r.note("response.output_text.delta", "not even JSON");
        let mut failed = Recorder::default();
        failed.note("response.created", r#"{"response":{"id":"resp_9"}}"#);
        assert_eq!(failed.finish(&body), None);
        r.note("response.completed", r#"{"response":{"id":"resp_9"}}"#);
        let turn = r.finish(&body).unwrap();
        assert_eq!(turn.response_id, "resp_9");
        assert_eq!(turn.output.len(), 1);
        let next = obj(
            json!({"model":"m","input":[user("a"), {"type":"function_call","id":"fc_1","call_id":"c1","name":"x","arguments":"{}"}, {"type":"function_call_output","call_id":"c1","output":"ok"}],"tools":[]}),
        );
        assert_eq!(
            delta(&turn, &next).map(<[Value]>::len),
            Some(1),
            "the tool's output continues the turn"
        );
    }
}
