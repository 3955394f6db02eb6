//! Connecting to a RabbitMQ cluster: `amqp_url` may list every node, and a node that
//! does not answer is skipped (a real broker; a private vhost per test).

use loa_platform::{amqp, testing::TestEnv};

#[tokio::test]
async fn a_list_of_cluster_nodes_connects_to_the_one_that_answers_whichever_is_tried_first() {
    // Arrange: a dead node (nothing listens on port 1) and the test broker.
    let env = TestEnv::new().await.unwrap();
    let url = format!(
        "amqp://guest:guest@127.0.0.1:1/{},{}",
        env.name, env.amqp_url
    );

    // Act + Assert: the first node tried is random; every attempt must land.
    for _ in 0..8 {
        let connection = amqp::connect(&url, "test-cluster").await.unwrap();
        assert!(connection.status().connected());
        connection.close(200, "done".into()).await.unwrap();
    }
}

#[tokio::test]
async fn when_no_node_answers_the_error_names_every_node_and_no_password() {
    // Arrange
    let url = "amqp://loa:s3cret-pw@127.0.0.1:1/loa, amqp://loa:s3cret-pw@127.0.0.1:2/loa";

    // Act
    let error = amqp::connect(url, "test-cluster").await.unwrap_err();

    // Assert
    let message = format!("{error:#}");
    assert!(
        message.starts_with("no RabbitMQ node answered"),
        "{message}"
    );
    assert!(
        message.contains("amqp://127.0.0.1:1/loa") && message.contains("amqp://127.0.0.1:2/loa"),
        "{message}"
    );
    assert!(
        !message.contains("s3cret-pw") && !message.contains('@'),
        "{message}"
    );
}

#[test]
fn an_amqp_url_holds_one_node_or_several_separated_by_commas() {
    assert_eq!(
        amqp::nodes("amqp://guest:guest@127.0.0.1:5672/%2f"),
        ["amqp://guest:guest@127.0.0.1:5672/%2f"]
    );
    assert_eq!(
        amqp::nodes("amqp://a@r0:5672/loa, amqp://a@r1:5672/loa,"),
        ["amqp://a@r0:5672/loa", "amqp://a@r1:5672/loa"]
    );
}
