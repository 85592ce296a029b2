//! Registry credentials, as Docker and Podman users already have them: `ORCH_REGISTRY_TOKEN`
//! or `ORCH_REGISTRY_USER`/`ORCH_REGISTRY_PASSWORD` for the one registry named by
//! `ORCH_REGISTRY` (never sent to another one a workflow names), then `docker login`'s
//! config.json (credential helpers included), else anonymous.

use oci_client::secrets::RegistryAuth;

pub(super) async fn for_registry(registry: &str) -> RegistryAuth {
    let ours = std::env::var("ORCH_REGISTRY").is_ok_and(|r| r == registry);
    if !ours {
        return from_docker_config(registry).await;
    }
    if let Ok(token) = std::env::var("ORCH_REGISTRY_TOKEN") {
        return RegistryAuth::Bearer(token);
    }
    if let (Ok(user), Ok(password)) = (
        std::env::var("ORCH_REGISTRY_USER"),
        std::env::var("ORCH_REGISTRY_PASSWORD"),
    ) {
        return RegistryAuth::Basic(user, password);
    }
    from_docker_config(registry).await
}

async fn from_docker_config(registry: &str) -> RegistryAuth {
    let registry = registry.to_string();
    // Reading config.json may run a credential helper: not on an async thread.
    let found =
        tokio::task::spawn_blocking(move || docker_credential::get_credential(&registry)).await;
    match found {
        Ok(Ok(docker_credential::DockerCredential::UsernamePassword(user, password))) => {
            RegistryAuth::Basic(user, password)
        }
        Ok(Ok(docker_credential::DockerCredential::IdentityToken(token))) => {
            RegistryAuth::Bearer(token)
        }
        _ => RegistryAuth::Anonymous,
    }
}
