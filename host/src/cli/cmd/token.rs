//! `orch token create|list|revoke`: API tokens of `orch serve`, stored hashed in the run store.

use crate::cli::CliError;
use crate::cli::TokenCommand;
use crate::cli::render;
use crate::cli::settings::Settings;
use crate::serve::auth;
use crate::store::Scope;

pub(super) async fn token(settings: &Settings, command: TokenCommand) -> Result<(), CliError> {
    let store = settings.store().await?;
    match command {
        TokenCommand::Create { name, read_only } => {
            let (token, hash) = auth::new_token();
            let id = uuid::Uuid::now_v7().simple().to_string();
            let scope = if read_only { Scope::Read } else { Scope::Run };
            store.insert_token(&id, &name, &hash, scope).await?;
            if settings.json {
                println!(
                    "{}",
                    serde_json::json!({"id": id, "name": name, "scope": scope, "token": token})
                );
            } else {
                // A note for the human, on stderr, so stdout is the token alone.
                let what = if read_only {
                    "read-only token"
                } else {
                    "token"
                };
                eprintln!("created {what} `{name}` ({id}); it is shown once, keep it:");
                println!("{token}");
            }
        }
        TokenCommand::List => {
            let tokens = store.list_tokens().await?;
            settings.emit(tokens.as_slice(), render::tokens)?;
        }
        TokenCommand::Revoke { id } => {
            if store.revoke_token(&id).await? == 0 {
                return Err(CliError::failed(format_args!(
                    "no live token with id or name `{id}` (`orch token list`)"
                )));
            }
            eprintln!("revoked `{id}`");
        }
    }
    Ok(())
}
