//! The Codex models `ListModels` reports: the built-in list plus any the
//! config file adds.

/// A model and its limits (the config file's shape: it adds models).
pub use crate::config::Model;

const BUILT_IN: [&str; 9] = [
    "gpt-5.1",
    "gpt-5.1-codex-max",
    "gpt-5.1-codex-mini",
    "gpt-5.2",
    "gpt-5.2-codex",
    "gpt-5.3-codex",
    "gpt-5.4",
    "gpt-5.4-mini",
    "gpt-5.5",
];

/// The built-in models (272k context, 128k output), then `extra`; an extra
/// model with a built-in id replaces it.
pub fn list(extra: &[Model]) -> Vec<Model> {
    let mut models: Vec<Model> = BUILT_IN
        .iter()
        .filter(|id| !extra.iter().any(|m| m.id == **id))
        .map(|id| Model {
            id: (*id).to_owned(),
            context_window: 272_000,
            max_output_tokens: 128_000,
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
                id: "gpt-6".into(),
                context_window: 1,
                max_output_tokens: 2,
            },
            Model {
                id: "gpt-5.5".into(),
                context_window: 3,
                max_output_tokens: 4,
            },
        ];
        let all = list(&extra);
        assert_eq!(all.len(), 10);
        assert_eq!(
            all[0],
            Model {
                id: "gpt-5.1".into(),
                context_window: 272_000,
                max_output_tokens: 128_000
            }
        );
        assert_eq!(all.iter().filter(|m| m.id == "gpt-5.5").count(), 1);
        assert_eq!(all.last().unwrap().id, "gpt-5.5");
        assert_eq!(list(&[]).len(), 9);
    }
}
