//! Registry credentials, as Docker and Podman users already have them: `ORCH_REGISTRY_TOKEN`
//! or `ORCH_REGISTRY_USER`/`ORCH_REGISTRY_PASSWORD` first, then `docker login`'s config.json
//! (credential helpers included), else anonymous.

use oci_client::secrets::RegistryAuth;

pub(super) async fn for_registry(registry: &str) -> RegistryAuth {
    if let Ok(token) = std::env::var("ORCH_REGISTRY_TOKEN") {
        return RegistryAuth::Bearer(token);
    }
    if let (Ok(user), Ok(password)) = (
        std::env::var("ORCH_REGISTRY_USER"),
        std::env::var("ORCH_REGISTRY_PASSWORD"),
    ) {
        return RegistryAuth::Basic(user, password);
    }
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
