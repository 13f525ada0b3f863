// sqlx::migrate! embeds the migration files at compile time but does not
// notice a new file; rebuild when the folder changes (as sqlx advises).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
