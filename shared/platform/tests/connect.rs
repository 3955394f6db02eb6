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

#[tokio::test]
async fn a_connection_negotiates_frames_of_32_kib_unless_its_url_names_a_size() {
    // Arrange
    let env = TestEnv::new().await.unwrap();

    // Act
    let default = amqp::connect(&env.amqp_url, "test-frames").await.unwrap();
    let named = amqp::connect(&format!("{}?frame_max=65536", env.amqp_url), "test-frames")
        .await
        .unwrap();

    // Assert: the broker offers 128 KiB; the client's smaller size wins.
    assert_eq!(default.configuration().frame_max(), amqp::FRAME_MAX);
    assert_eq!(amqp::FRAME_MAX, 32 * 1024);
    assert_eq!(named.configuration().frame_max(), 65536);
}

#[tokio::test]
async fn a_message_four_frames_long_is_confirmed_and_read_back_whole() {
    use lapin::options::{
        BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    };
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let connection = amqp::connect(&env.amqp_url, "test-frames").await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
        .queue_declare(
            "frames".into(),
            QueueDeclareOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let body: Vec<u8> = (0..4 * amqp::FRAME_MAX as usize)
        .map(|i| (i % 251) as u8)
        .collect();

    // Act
    let confirm = channel
        .basic_publish(
            "".into(),
            "frames".into(),
            BasicPublishOptions::default(),
            &body,
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let got = channel
        .basic_get("frames".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the message");

    // Assert
    assert!(confirm.is_ack());
    assert_eq!(got.delivery.data, body);
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
