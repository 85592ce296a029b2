//! `orch secret list|get|set|rm`: the host secret store, where `store_secret` keeps values
//! that workflows read as `secrets.NAME`.

use crate::cli::CliError;
use crate::cli::SecretCommand;
use crate::cli::settings::Settings;

pub(super) fn secret(settings: &Settings, command: SecretCommand) -> Result<(), CliError> {
    let store = settings.secret_store()?;
    match command {
        SecretCommand::List => {
            for name in store.list()? {
                println!("{name}");
            }
        }
        SecretCommand::Get { name } => match store.get(&name)? {
            Some(value) => println!("{value}"),
            None => {
                return Err(CliError::failed(format_args!(
                    "no secret `{name}` in the secret store (`orch secret list` shows them)"
                )));
            }
        },
        SecretCommand::Set { name } => {
            let mut value = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)?;
            store.set(&name, value.trim_end_matches(['\n', '\r']))?;
        }
        SecretCommand::Rm { name } => {
            if !store.remove(&name)? {
                return Err(CliError::failed(format_args!(
                    "no secret `{name}` in the secret store"
                )));
            }
        }
    }
    Ok(())
}
