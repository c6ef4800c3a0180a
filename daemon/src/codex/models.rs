//! The Codex models `ListModels` reports: the built-in list plus any the
//! config file adds.

/// A model and its limits (the config file's shape: it adds models).
pub use crate::config::Model;

/// pi 1.6.0's Codex catalog (pi-ai's `openai-codex` models): id, context
/// window, most output tokens. `pi-authctl models` and pi offer the same.
const BUILT_IN: [(&str, u64, u64); 10] = [
    ("gpt-5.6-luna", 272_000, 128_000),
    ("gpt-5.6-sol", 272_000, 128_000),
    ("gpt-5.6-terra", 272_000, 128_000),
    ("gpt-6-astra", 272_000, 128_000),
    ("gpt-6-luna", 272_000, 128_000),
    ("gpt-6-sol", 272_000, 128_000),
    ("gpt-6.1-sol", 500_000, 128_000),
    ("gpt-6.1-terra", 500_000, 128_000),
    ("gpt-6.2-astra", 272_000, 128_000),
    ("gpt-6.2-sol", 500_000, 128_000),
];

/// The built-in models, then `extra`; an extra model with a built-in id
/// replaces it.
pub fn list(extra: &[Model]) -> Vec<Model> {
    let mut models: Vec<Model> = BUILT_IN
        .iter()
        .filter(|(id, ..)| !extra.iter().any(|m| m.id == *id))
        .map(|&(id, context_window, max_output_tokens)| Model {
            id: id.to_owned(),
            context_window,
            max_output_tokens,
        })
        .collect();
    models.extend(extra.iter().cloned());
    models
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_and_extras() {
        let extra = [
            Model {
                id: "gpt-7".into(),
                context_window: 1,
                max_output_tokens: 2,
            },
            Model {
                id: "gpt-6.2-sol".into(),
                context_window: 3,
                max_output_tokens: 4,
            },
        ];
        let all = list(&extra);
        assert_eq!(all.len(), 11);
        assert_eq!(
            all[0],
            Model {
                id: "gpt-5.6-luna".into(),
                context_window: 272_000,
                max_output_tokens: 128_000
            }
        );
        assert_eq!(all.iter().filter(|m| m.id == "gpt-6.2-sol").count(), 1);
        assert_eq!(all.last().unwrap().id, "gpt-6.2-sol");
        assert_eq!(list(&[]).len(), 10);
        assert!(
            list(&[]).iter().any(|m| m.id == "gpt-6.2-sol"),
            "pi's default"
        );
    }
}
